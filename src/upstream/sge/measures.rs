//! `ConsultationMesuresDetaillees` v3.0: the request, and its answer read into
//! normalised [`Reading`]s.
//!
//! # What comes out
//!
//! Readings are UTC seconds at the START of the interval they cover, with their
//! step, in W, VAr, VA or Wh (an answer in kW, kVAr, kVA or kWh is multiplied by
//! 1000; `V` is kept), ordered, without duplicates, restricted to the asked Paris
//! days `[from, to[`. A nil or empty `v` stays `None`. No data (an answer without
//! `grandeur`/`contexte`, or the fault SGT4G3) is an empty answer, not an error.
//!
//! - `COURBE` (PA, PRI, PRC, E): one reading per point, at its step: `p`, else
//!   the answer's `pas`, else the smallest gap between consecutive stamps.
//! - `ENERGIE`: `d` is the Paris day; the reading starts at its midnight, step P1D.
//! - `PMAX` (daily): the reading starts at the midnight of the day of `d`, step
//!   P1D; `d` is the instant the maximum was reached, kept in [`MaxPower`].
//!   Monthly maxima (`P1M`) only come out as [`MaxPower`] (a month is no
//!   Quoalise step).
//! - `INDEX`: each counter at the instant it was read (a Linky: the Paris
//!   midnight; a C4 meter: the night's reading time), step P1D, per calendar class
//!   (`idCalendrier` D… distributor, F… supplier) and the totalisator
//!   (`cadranTotalisateur`, or the sum of a distributor calendar's classes when
//!   there is none, as SGE answers for C1–C4). Every `contexte` is merged.
//!
//! # Curve stamping
//!
//! `d` is Paris local time without an offset. The captures show C5 curves stamped
//! at the interval END (`00:30:00` … next day `00:00:00`) and C4 curves at its
//! START (`00:00:00` … `23:55:00`); GUI.0488's text says the opposite, and C1–C3
//! are undocumented (read as C4). The rule, per `grandeur`:
//!
//! 1. a point stamped at the midnight ending the asked period (`dateFin
//!    00:00:00`) can only be an end stamp: END;
//! 2. else a point stamped at the midnight starting it (`dateDebut 00:00:00`)
//!    can only be a start stamp: START;
//! 3. else (the ends of the period are missing) by the step: shorter than 15
//!    minutes (PT5M, PT10M: the C1–C4 meters) START, otherwise (PT15M, PT30M,
//!    PT60M: Linky, C5/P4) END.
//!
//! # Daylight saving
//!
//! Local times go through the bundled Europe/Paris rules (`jiff`). In March the
//! skipped hour never appears (a day of PT30M has 46 points); a stamp inside it
//! would be read with the offset before the gap. In October the repeated hour
//! appears twice (50 points) and is resolved by position: a stamp that occurs
//! twice is its first occurrence, unless the previous point of the series already
//! reached that instant, then its second. So an end-stamped series `02:30, 02:00,
//! 02:30, 03:00` around the change reads as 00:30Z, 01:00Z, 01:30Z, 02:00Z ends.

use std::collections::BTreeMap;

use jiff::civil::{Date, DateTime};

use super::soap::{Node, Payload};
use crate::quoalise::{
    Calendar, ClassCode, Direction, Prm, Reactive, Reading, Series, SeriesKind, Step, TimeClass,
};
use crate::time::{self, PARIS, daily_reading, local_instant, sort_dedup};
use crate::upstream::normalise::{self, ShapeError};

/// The service's namespace.
pub const NAMESPACE: &str =
    "http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/common";

/// `mesuresTypeCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeasureType {
    /// `COURBE`: a load curve at the meter's step.
    Curve,
    /// `PMAX`: maximum apparent power, daily or monthly.
    MaxPower,
    /// `ENERGIE`: daily energy.
    Energy,
    /// `INDEX`: daily counters.
    Index,
}

impl MeasureType {
    pub fn code(self) -> &'static str {
        match self {
            MeasureType::Curve => "COURBE",
            MeasureType::MaxPower => "PMAX",
            MeasureType::Energy => "ENERGIE",
            MeasureType::Index => "INDEX",
        }
    }
}

/// `grandeurPhysique`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// `PA`: active power, W.
    ActivePower,
    /// `PRI`: inductive reactive power, VAr (C1–C4).
    InductiveReactive,
    /// `PRC`: capacitive reactive power, VAr (C1–C4).
    CapacitiveReactive,
    /// `PMA`: maximum apparent power, VA.
    MaxApparentPower,
    /// `EA`: active energy, Wh.
    ActiveEnergy,
}

impl Quantity {
    pub fn code(self) -> &'static str {
        match self {
            Quantity::ActivePower => "PA",
            Quantity::InductiveReactive => "PRI",
            Quantity::CapacitiveReactive => "PRC",
            Quantity::MaxApparentPower => "PMA",
            Quantity::ActiveEnergy => "EA",
        }
    }
}

/// `mesuresPas` of a PMAX request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxPowerStep {
    Daily,
    Monthly,
}

/// `cadreAcces`: under which right the data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessFrame {
    /// `ACCORD_CLIENT`: the customer's consent, held by the requester.
    CustomerConsent,
    /// `SERVICE_ACCES`: an access service ordered earlier
    /// ([`super::access`]).
    AccessService,
    /// `EST_TITULAIRE`: the requester holds the point.
    Holder,
}

impl AccessFrame {
    pub fn code(self) -> &'static str {
        match self {
            AccessFrame::CustomerConsent => "ACCORD_CLIENT",
            AccessFrame::AccessService => "SERVICE_ACCES",
            AccessFrame::Holder => "EST_TITULAIRE",
        }
    }
}

/// `sens` of a direction.
pub fn sens(direction: Direction) -> &'static str {
    match direction {
        Direction::Consumption => "SOUTIRAGE",
        Direction::Production => "INJECTION",
    }
}

/// One `consulterMesuresDetailleesV3` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuresRequest {
    pub prm: Prm,
    pub kind: MeasureType,
    pub quantity: Quantity,
    /// First Paris day, included.
    pub from: Date,
    /// Last Paris day, excluded.
    pub to: Date,
    /// Only for [`MeasureType::MaxPower`].
    pub max_power_step: Option<MaxPowerStep>,
    /// `mesuresCorrigees`: corrected (BEST) data, C1–C4 only (C5: SGT4H2).
    pub corrected: bool,
    pub direction: Direction,
    pub access: AccessFrame,
}

impl MeasuresRequest {
    fn new(prm: Prm, kind: MeasureType, quantity: Quantity, from: Date, to: Date) -> Self {
        MeasuresRequest {
            prm,
            kind,
            quantity,
            from,
            to,
            max_power_step: None,
            corrected: false,
            direction: Direction::Consumption,
            access: AccessFrame::CustomerConsent,
        }
    }

    /// Raw active-power curve drawn (`COURBE`/`PA`), under the customer's consent.
    pub fn curve(prm: Prm, from: Date, to: Date) -> Self {
        Self::new(prm, MeasureType::Curve, Quantity::ActivePower, from, to)
    }
    /// Daily energy drawn (`ENERGIE`/`EA`).
    pub fn energy(prm: Prm, from: Date, to: Date) -> Self {
        Self::new(prm, MeasureType::Energy, Quantity::ActiveEnergy, from, to)
    }
    /// Daily maximum power (`PMAX`/`PMA`, `P1D`).
    pub fn max_power(prm: Prm, from: Date, to: Date) -> Self {
        let mut r = Self::new(
            prm,
            MeasureType::MaxPower,
            Quantity::MaxApparentPower,
            from,
            to,
        );
        r.max_power_step = Some(MaxPowerStep::Daily);
        r
    }
    /// Daily counters (`INDEX`/`EA`).
    pub fn index(prm: Prm, from: Date, to: Date) -> Self {
        Self::new(prm, MeasureType::Index, Quantity::ActiveEnergy, from, to)
    }

    /// The request answering `series` of `prm` over `[from, to[`; `None` for a
    /// series no call answers (the energy per class is derived from the index).
    pub fn for_series(prm: Prm, series: Series, from: Date, to: Date) -> Option<Self> {
        let request = match crate::upstream::source(series) {
            Series::ConsumptionPower | Series::ProductionPower => Self::curve(prm, from, to),
            Series::CorrectedPower(_) => Self::curve(prm, from, to).with_corrected(true),
            Series::ReactivePower(Reactive::Inductive) => {
                Self::curve(prm, from, to).with_quantity(Quantity::InductiveReactive)
            }
            Series::ReactivePower(Reactive::Capacitive) => {
                Self::curve(prm, from, to).with_quantity(Quantity::CapacitiveReactive)
            }
            Series::ConsumptionEnergyDaily | Series::ProductionEnergyDaily => {
                Self::energy(prm, from, to)
            }
            Series::ConsumptionMaxPower => Self::max_power(prm, from, to),
            Series::EnergyIndex(_) => Self::index(prm, from, to),
            Series::ClassIndex(..) | Series::ClassEnergyDaily(..) => return None,
        };
        Some(request.with_direction(series.direction()))
    }

    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
    pub fn with_access(mut self, access: AccessFrame) -> Self {
        self.access = access;
        self
    }
    pub fn with_quantity(mut self, quantity: Quantity) -> Self {
        self.quantity = quantity;
        self
    }
    pub fn with_corrected(mut self, corrected: bool) -> Self {
        self.corrected = corrected;
        self
    }
    pub fn with_max_power_step(mut self, step: MaxPowerStep) -> Self {
        self.max_power_step = Some(step);
        self
    }

    /// The `soap:Body` element, `initiateurLogin` = `login`, fields in XSD order.
    pub fn payload(&self, login: &str) -> String {
        let mut p = Payload::root("v3", "consulterMesuresDetailleesV3", NAMESPACE);
        p.open("demande")
            .leaf("initiateurLogin", login)
            .leaf("pointId", self.prm.as_str())
            .leaf("mesuresTypeCode", self.kind.code())
            .leaf("grandeurPhysique", self.quantity.code())
            .leaf("dateDebut", &self.from.to_string())
            .leaf("dateFin", &self.to.to_string());
        if self.kind == MeasureType::MaxPower {
            p.leaf(
                "mesuresPas",
                match self.max_power_step.unwrap_or(MaxPowerStep::Daily) {
                    MaxPowerStep::Daily => "P1D",
                    MaxPowerStep::Monthly => "P1M",
                },
            );
        }
        p.leaf(
            "mesuresCorrigees",
            if self.corrected { "true" } else { "false" },
        )
        .leaf("sens", sens(self.direction))
        .leaf("cadreAcces", self.access.code())
        .close("demande");
        p.finish("v3", "consulterMesuresDetailleesV3")
    }
}

/// How a curve's points were stamped (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamping {
    Start,
    End,
}

/// One `grandeur` of an answer (curves, energy, maxima).
#[derive(Debug, Clone, PartialEq)]
pub struct Grandeur {
    /// `CONS` → consumption, `PROD` → production.
    pub direction: Direction,
    /// `PA`, `PRI`, `EA`, `PMA`… as answered.
    pub quantity: String,
    /// The unit of the readings: W, VAr, VA, Wh or V (after a k-prefix is removed).
    pub unit: String,
    pub readings: Vec<Reading>,
    /// For a curve, how it was stamped upstream.
    pub stamping: Option<Stamping>,
    /// For PMAX, each maximum with the instant it was reached.
    pub maxima: Vec<MaxPower>,
}

/// One maximum power: the day (or month) it belongs to and when it was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaxPower {
    /// UTC seconds of the Paris midnight starting its day (or month).
    pub start: i64,
    /// UTC seconds of the instant it was reached, when `d` gives a time (daily).
    pub reached: Option<i64>,
    /// VA.
    pub value: Option<f64>,
}

/// A read `consulterMesuresDetailleesResponseV3`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measures {
    /// `BRUT` or `BEST`, when answered.
    pub corrected: Option<String>,
    pub grandeurs: Vec<Grandeur>,
    /// For INDEX: [`Series::EnergyIndex`] of each direction answered, then each
    /// class (`Series::ClassIndex`), ordered.
    pub index: Vec<(Series, Vec<Reading>)>,
}

impl Measures {
    /// The readings of `series` (and, for an index, of every class answered with
    /// it, as [`crate::upstream::Fetched::siblings`] wants them): `series` first.
    pub fn into_series(self, series: Series) -> Vec<(Series, Vec<Reading>)> {
        let direction = series.direction();
        match series.kind() {
            SeriesKind::Index => {
                let mut all: Vec<(Series, Vec<Reading>)> = self
                    .index
                    .into_iter()
                    .filter(|(s, _)| s.direction() == direction)
                    .collect();
                if let Some(i) = all.iter().position(|(s, _)| *s == series) {
                    let wanted = all.remove(i);
                    all.insert(0, wanted);
                } else {
                    all.insert(0, (series, Vec::new()));
                }
                all
            }
            _ => {
                let quantity = match series {
                    Series::ReactivePower(Reactive::Inductive) => "PRI",
                    Series::ReactivePower(Reactive::Capacitive) => "PRC",
                    _ => match series.kind() {
                        SeriesKind::LoadCurve => "PA",
                        SeriesKind::DailyMaxPower => "PMA",
                        _ => "EA",
                    },
                };
                let readings = self
                    .grandeurs
                    .into_iter()
                    .find(|g| g.direction == direction && g.quantity == quantity)
                    .map(|g| g.readings)
                    .unwrap_or_default();
                vec![(series, readings)]
            }
        }
    }
}

/// Read the answer `payload` (`consulterMesuresDetailleesResponseV3`) to `request`.
pub fn parse(request: &MeasuresRequest, payload: &Node) -> Result<Measures, ShapeError> {
    if payload.name != "consulterMesuresDetailleesResponseV3" {
        return Err(ShapeError(format!(
            "<{}> where consulterMesuresDetailleesResponseV3 was expected",
            payload.name
        )));
    }
    normalise::check_prm(payload.text_of("pointId"), &request.prm)?;
    let mut measures = Measures {
        corrected: payload.text_of("mesuresCorrigees").map(str::to_owned),
        ..Measures::default()
    };
    let pas = payload.text_of("pas");
    for grandeur in payload.all("grandeur") {
        measures
            .grandeurs
            .push(read_grandeur(request, grandeur, pas)?);
    }
    let contextes: Vec<&Node> = payload.all("contexte").collect();
    if !contextes.is_empty() {
        measures.index = read_index(request, &contextes)?;
    }
    Ok(measures)
}

fn direction_of(metier: Option<&str>) -> Result<Direction, ShapeError> {
    match metier {
        Some("CONS") => Ok(Direction::Consumption),
        Some("PROD") => Ok(Direction::Production),
        other => Err(ShapeError(format!(
            "grandeurMetier {:?} is neither CONS nor PROD",
            other.unwrap_or_default()
        ))),
    }
}

/// The factor to W/VAr/VA/Wh/V and the unit without prefix.
fn unit_of(raw: Option<&str>, quantity: &str) -> Result<(f64, String), ShapeError> {
    const UNITS: [&str; 5] = ["W", "VAr", "VA", "Wh", "V"];
    let default = match quantity {
        "PA" => "W",
        "PRI" | "PRC" => "VAr",
        "PMA" => "VA",
        "E" => "V",
        _ => "Wh",
    };
    let Some(unit) = raw.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok((1.0, default.to_owned()));
    };
    if UNITS.contains(&unit) {
        return Ok((1.0, unit.to_owned()));
    }
    if let Some(base) = unit.strip_prefix('k')
        && UNITS.contains(&base)
    {
        return Ok((1000.0, base.to_owned()));
    }
    Err(ShapeError(format!(
        "unit {unit:?} of grandeur {quantity} is none of W, VAr, VA, Wh, V (or kW…)"
    )))
}

fn value_of(point: &Node, name: &str, scale: f64, at: &str) -> Result<Option<f64>, ShapeError> {
    let Some(v) = point.child(name) else {
        return Ok(None);
    };
    if v.is_nil() || v.text.is_empty() {
        return Ok(None);
    }
    match v.text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Some(n * scale)),
        _ => Err(ShapeError(format!(
            "the value {:?} at d={at:?} is not a number",
            v.text
        ))),
    }
}

fn read_grandeur(
    request: &MeasuresRequest,
    grandeur: &Node,
    pas: Option<&str>,
) -> Result<Grandeur, ShapeError> {
    let direction = direction_of(grandeur.text_of("grandeurMetier"))?;
    let quantity = grandeur
        .text_of("grandeurPhysique")
        .unwrap_or_default()
        .to_owned();
    let (scale, unit) = unit_of(grandeur.text_of("unite"), &quantity)?;
    let mut out = Grandeur {
        direction,
        quantity,
        unit,
        readings: Vec::new(),
        stamping: None,
        maxima: Vec::new(),
    };
    let points: Vec<&Node> = grandeur.all("points").collect();
    match request.kind {
        MeasureType::Curve => {
            let (readings, stamping) = curve(request, &points, pas, scale)?;
            out.readings = readings;
            out.stamping = Some(stamping);
        }
        MeasureType::Energy => {
            for point in &points {
                let d = point.text_of("d").unwrap_or_default();
                let day = normalise::day_of(d)?;
                out.readings
                    .push(daily_reading(day, value_of(point, "v", scale, d)?)?);
            }
        }
        MeasureType::MaxPower => {
            let monthly = request.max_power_step == Some(MaxPowerStep::Monthly)
                || pas.is_some_and(|p| p == "P1M");
            for point in &points {
                let d = point.text_of("d").unwrap_or_default();
                let day = normalise::day_of(d)?;
                let value = value_of(point, "v", scale, d)?;
                let reached = if d.len() > 10 && !monthly {
                    Some(local_instant(time::parse_local_datetime(d)?)?)
                } else {
                    None
                };
                let reading = daily_reading(day, value)?;
                out.maxima.push(MaxPower {
                    start: reading.start,
                    reached,
                    value,
                });
                if !monthly {
                    out.readings.push(reading);
                }
            }
        }
        MeasureType::Index => {}
    }
    out.readings = normalise::finish(out.readings, request.from, request.to)?;
    out.maxima.sort_by_key(|m| m.start);
    Ok(out)
}

/// A curve's points into start-stamped UTC readings (module doc).
fn curve(
    request: &MeasuresRequest,
    points: &[&Node],
    pas: Option<&str>,
    scale: f64,
) -> Result<(Vec<Reading>, Stamping), ShapeError> {
    let mut parsed: Vec<(DateTime, Option<Step>, Option<f64>)> = Vec::with_capacity(points.len());
    for point in points {
        let d = point.text_of("d").unwrap_or_default();
        let local = time::parse_local_datetime(d)?;
        let step = match point.text_of("p") {
            Some(p) => Some(
                p.parse::<Step>()
                    .map_err(|e| ShapeError(format!("d={d:?}: {e}")))?,
            ),
            None => None,
        };
        parsed.push((local, step, value_of(point, "v", scale, d)?));
    }
    let default_step = match pas.and_then(|p| p.parse::<Step>().ok()) {
        Some(Step::Minutes(m)) => Some(Step::Minutes(m)),
        _ => inferred_step(&parsed),
    };
    let step_of = |s: Option<Step>| -> Result<Step, ShapeError> {
        match s.or(default_step) {
            Some(step @ Step::Minutes(_)) => Ok(step),
            _ => Err(ShapeError(
                "the curve's points have no step (p), the answer no pas, and too few points to infer one"
                    .to_owned(),
            )),
        }
    };
    let midnight = |d: Date| d.to_datetime(jiff::civil::Time::midnight());
    let stamping = if parsed.iter().any(|(l, ..)| *l == midnight(request.to)) {
        Stamping::End
    } else if parsed.iter().any(|(l, ..)| *l == midnight(request.from)) {
        Stamping::Start
    } else {
        let first = parsed.iter().find_map(|(_, s, _)| *s).or(default_step);
        match first {
            Some(Step::Minutes(m)) if m < 15 => Stamping::Start,
            _ => Stamping::End,
        }
    };
    let mut readings = Vec::with_capacity(parsed.len());
    let mut last: Option<jiff::Timestamp> = None;
    for (local, step, value) in parsed {
        let step = step_of(step)?;
        let seconds = step.nominal_seconds();
        let instant = by_position(local, &mut last)?;
        let start = match stamping {
            Stamping::Start => instant.as_second(),
            Stamping::End => instant.as_second() - seconds,
        };
        readings.push(Reading { start, step, value });
    }
    sort_dedup(&mut readings);
    Ok((readings, stamping))
}

/// The smallest positive gap between consecutive stamps, in whole minutes, up to
/// an hour.
fn inferred_step(points: &[(DateTime, Option<Step>, Option<f64>)]) -> Option<Step> {
    points
        .windows(2)
        .filter_map(|w| {
            let minutes = w[1].0.duration_since(w[0].0).as_mins();
            (1..=60).contains(&minutes).then_some(minutes)
        })
        .min()
        .and_then(|m| u16::try_from(m).ok())
        .map(Step::Minutes)
}

/// A local stamp as an instant, the repeated autumn hour by position (module doc).
fn by_position(
    local: DateTime,
    last: &mut Option<jiff::Timestamp>,
) -> Result<jiff::Timestamp, ShapeError> {
    let ambiguous = PARIS.to_ambiguous_timestamp(local);
    let map = |e: jiff::Error| ShapeError(format!("{local}: {e}"));
    let instant = if ambiguous.is_ambiguous() {
        let earlier = ambiguous.earlier().map_err(map)?;
        match *last {
            Some(previous) if previous >= earlier => ambiguous.later().map_err(map)?,
            _ => earlier,
        }
    } else {
        ambiguous.compatible().map_err(map)?
    };
    *last = Some(instant);
    Ok(instant)
}

/// Which calendar an `idCalendrier` names.
fn calendar_of(id: &str) -> Result<Calendar, ShapeError> {
    match id.trim() {
        id if id.starts_with('D') => Ok(Calendar::Distributor),
        id if id.starts_with('F') => Ok(Calendar::Provider),
        id => Err(ShapeError(format!(
            "idCalendrier {id:?} names neither a distributor calendar (D…) nor a supplier one (F…)"
        ))),
    }
}

fn counter(valeur: &Node, scale: f64) -> Result<Reading, ShapeError> {
    let d = valeur.text_of("d").unwrap_or_default();
    let local = if d.len() == 10 {
        time::parse_date(d)?.to_datetime(jiff::civil::Time::midnight())
    } else {
        time::parse_local_datetime(d)?
    };
    Ok(Reading {
        start: local_instant(local)?,
        step: Step::Day,
        value: value_of(valeur, "v", scale, d)?,
    })
}

/// Every counter of an INDEX answer, per direction (module doc).
fn read_index(
    request: &MeasuresRequest,
    contextes: &[&Node],
) -> Result<Vec<(Series, Vec<Reading>)>, ShapeError> {
    let mut totals: BTreeMap<Direction, Vec<Reading>> = BTreeMap::new();
    let mut classes: BTreeMap<(Direction, TimeClass), Vec<Reading>> = BTreeMap::new();
    // The classes of each distributor calendar, per direction.
    let mut distributor: BTreeMap<(Direction, String), Vec<TimeClass>> = BTreeMap::new();
    for contexte in contextes {
        for grandeur in contexte.all("grandeur") {
            let direction = direction_of(grandeur.text_of("grandeurMetier"))?;
            if grandeur
                .text_of("grandeurPhysique")
                .is_some_and(|p| p != "EA")
            {
                continue;
            }
            let (scale, _) = unit_of(grandeur.text_of("unite"), "EA")?;
            let total = totals.entry(direction).or_default();
            if let Some(t) = grandeur.child("cadranTotalisateur") {
                for valeur in t.all("valeur") {
                    total.push(counter(valeur, scale)?);
                }
            }
            for calendrier in grandeur.all("calendrier") {
                let id = calendrier.text_of("idCalendrier").unwrap_or_default();
                let calendar = calendar_of(id)?;
                for classe in calendrier.all("classeTemporelle") {
                    let raw = classe.text_of("idClasseTemporelle").unwrap_or_default();
                    let code = ClassCode::from_enedis(raw).map_err(|e| {
                        ShapeError(format!(
                            "idClasseTemporelle {raw:?} of calendrier {id:?}: {e}"
                        ))
                    })?;
                    let class = TimeClass::new(calendar, code);
                    if calendar == Calendar::Distributor {
                        let members = distributor.entry((direction, id.to_owned())).or_default();
                        if !members.contains(&class) {
                            members.push(class);
                        }
                    }
                    let readings = classes.entry((direction, class)).or_default();
                    for valeur in classe.all("valeur") {
                        readings.push(counter(valeur, scale)?);
                    }
                }
            }
        }
    }
    for readings in classes.values_mut() {
        sort_dedup(readings);
    }
    let mut all = Vec::new();
    for (direction, mut total) in totals {
        sort_dedup(&mut total);
        if total.is_empty() {
            total = summed(direction, &classes, &distributor);
        }
        all.push((
            Series::EnergyIndex(direction),
            normalise::finish(total, request.from, request.to)?,
        ));
        for ((d, class), readings) in &classes {
            if *d == direction {
                all.push((
                    Series::ClassIndex(direction, *class),
                    normalise::finish(readings.clone(), request.from, request.to)?,
                ));
            }
        }
    }
    Ok(all)
}

/// The whole meter's counter from a distributor calendar: at each instant where
/// every class of one calendar has a value, their sum.
fn summed(
    direction: Direction,
    classes: &BTreeMap<(Direction, TimeClass), Vec<Reading>>,
    distributor: &BTreeMap<(Direction, String), Vec<TimeClass>>,
) -> Vec<Reading> {
    let mut out = Vec::new();
    for ((d, _), members) in distributor {
        if *d != direction {
            continue;
        }
        let Some(first) = members.first().and_then(|c| classes.get(&(direction, *c))) else {
            continue;
        };
        for reading in first {
            let sum: Option<f64> = members
                .iter()
                .map(|class| {
                    let readings = classes.get(&(direction, *class))?;
                    let i = readings
                        .binary_search_by_key(&reading.start, |r| r.start)
                        .ok()?;
                    readings[i].value
                })
                .sum();
            if let Some(sum) = sum {
                out.push(Reading {
                    start: reading.start,
                    step: Step::Day,
                    value: Some(sum),
                });
            }
        }
    }
    sort_dedup(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const PRM: &str = "09111642617347";

    fn answer(points: &[(&str, &str)], step: Option<&str>) -> Node {
        let mut xml = String::from(
            "<r:consulterMesuresDetailleesResponseV3 xmlns:r=\"urn:x\"><pointId>09111642617347</pointId><grandeur><grandeurMetier>CONS</grandeurMetier><grandeurPhysique>PA</grandeurPhysique><unite>kW</unite>",
        );
        for (d, v) in points {
            xml.push_str(&format!("<points><v>{v}</v><d>{d}</d>"));
            if let Some(p) = step {
                xml.push_str(&format!("<p>{p}</p>"));
            }
            xml.push_str("</points>");
        }
        xml.push_str("</grandeur></r:consulterMesuresDetailleesResponseV3>");
        super::super::soap::parse(xml.as_bytes()).unwrap()
    }

    /// Every local stamp of a day at `minutes`, starting at `first` minutes after
    /// midnight, as wall-clock text, the repeated October hour written twice.
    fn local_day(day: Date, first: i64, minutes: i64) -> Vec<String> {
        let mut out = Vec::new();
        let start = jiff::Timestamp::from_second(crate::time::day_start(day).unwrap()).unwrap();
        let end =
            jiff::Timestamp::from_second(crate::time::day_start(day.tomorrow().unwrap()).unwrap())
                .unwrap();
        let mut t = start + jiff::SignedDuration::from_mins(first);
        let stop = end + jiff::SignedDuration::from_mins(first);
        while t < stop {
            out.push(
                PARIS
                    .to_datetime(t)
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            );
            t += jiff::SignedDuration::from_mins(minutes);
        }
        out
    }

    fn read(day: Date, stamps: &[String], step: Option<&str>) -> (Vec<Reading>, Stamping) {
        let points: Vec<(&str, &str)> = stamps.iter().map(|d| (d.as_str(), "1.5")).collect();
        let request = MeasuresRequest::curve(PRM.parse().unwrap(), day, day.tomorrow().unwrap());
        let mut m = parse(&request, &answer(&points, step)).unwrap();
        let g = m.grandeurs.remove(0);
        assert_eq!(g.unit, "W");
        (g.readings, g.stamping.unwrap())
    }

    fn check_day(day: Date, readings: &[Reading], count: usize, step_minutes: i64) {
        assert_eq!(readings.len(), count, "{day}");
        let midnight = crate::time::day_start(day).unwrap();
        assert_eq!(readings[0].start, midnight);
        for (i, r) in readings.iter().enumerate() {
            assert_eq!(
                r.start,
                midnight + i as i64 * step_minutes * 60,
                "{day} #{i}"
            );
            assert_eq!(r.value, Some(1500.0), "kW read as W");
        }
        assert_eq!(
            readings.last().unwrap().start + step_minutes * 60,
            crate::time::day_start(day.tomorrow().unwrap()).unwrap()
        );
    }

    #[test]
    fn end_stamped_half_hours_over_both_dst_days() {
        for (day, count) in [
            (date(2026, 3, 29), 46),
            (date(2026, 10, 25), 50),
            (date(2026, 6, 1), 48),
        ] {
            let stamps = local_day(day, 30, 30);
            assert_eq!(stamps.len(), count);
            let (readings, stamping) = read(day, &stamps, Some("PT30M"));
            assert_eq!(stamping, Stamping::End, "{day}");
            check_day(day, &readings, count, 30);
        }
    }

    #[test]
    fn start_stamped_ten_minutes_over_both_dst_days() {
        for (day, count) in [(date(2026, 3, 29), 138), (date(2026, 10, 25), 150)] {
            let stamps = local_day(day, 0, 10);
            let (readings, stamping) = read(day, &stamps, Some("PT10M"));
            assert_eq!(stamping, Stamping::Start, "{day}");
            check_day(day, &readings, count, 10);
        }
    }

    #[test]
    fn without_the_period_ends_the_step_decides_and_without_p_the_stamps_give_it() {
        let day = date(2026, 6, 1);
        // Neither midnight present: PT30M is read as end stamps, PT5M as start.
        let stamps = local_day(day, 30, 30);
        let (r, s) = read(day, &stamps[2..10], None);
        assert_eq!(s, Stamping::End);
        assert_eq!(
            r[0].step,
            Step::Minutes(30),
            "step inferred from the stamps"
        );
        assert_eq!(r[0].start, crate::time::day_start(day).unwrap() + 3600);
        let stamps = local_day(day, 0, 5);
        let (r, s) = read(day, &stamps[5..20], Some("PT5M"));
        assert_eq!(s, Stamping::Start);
        assert_eq!(r[0].start, crate::time::day_start(day).unwrap() + 25 * 60);
    }

    #[test]
    fn nil_values_stay_missing_and_bad_values_are_refused() {
        let day = date(2026, 6, 1);
        let request = MeasuresRequest::curve(PRM.parse().unwrap(), day, day.tomorrow().unwrap());
        let xml = "<r xmlns:x=\"urn:i\"><grandeur><grandeurMetier>CONS</grandeurMetier><grandeurPhysique>PA</grandeurPhysique><unite>W</unite><points><v x:nil=\"true\"/><d>2026-06-01 00:30:00</d><p>PT30M</p></points></grandeur></r>";
        let mut node = super::super::soap::parse(xml.as_bytes()).unwrap();
        node.name = "consulterMesuresDetailleesResponseV3".to_owned();
        let m = parse(&request, &node).unwrap();
        assert_eq!(m.grandeurs[0].readings[0].value, None);
        let bad = xml.replace("<v x:nil=\"true\"/>", "<v>12,5</v>");
        let mut node = super::super::soap::parse(bad.as_bytes()).unwrap();
        node.name = "consulterMesuresDetailleesResponseV3".to_owned();
        let e = parse(&request, &node).unwrap_err();
        assert!(e.0.contains("12,5"), "{e}");
    }

    #[test]
    fn monthly_maxima_are_kept_apart_from_the_daily_readings() {
        let request =
            MeasuresRequest::max_power(PRM.parse().unwrap(), date(2026, 1, 1), date(2026, 3, 1))
                .with_max_power_step(MaxPowerStep::Monthly);
        assert!(
            request
                .payload("a@b.fr")
                .contains("<mesuresPas>P1M</mesuresPas>")
        );
        let xml = "<consulterMesuresDetailleesResponseV3><grandeur><grandeurMetier>CONS</grandeurMetier><grandeurPhysique>PMA</grandeurPhysique><unite>kVA</unite><points><v>6.2</v><d>2026-01-01 00:00:00</d></points><points><v xsi:nil=\"true\" xmlns:xsi=\"urn:xsi\"/><d>2026-02-01 00:00:00</d></points></grandeur><pas>P1M</pas></consulterMesuresDetailleesResponseV3>";
        let node = super::super::soap::parse(xml.as_bytes()).unwrap();
        let m = parse(&request, &node).unwrap();
        let g = &m.grandeurs[0];
        assert!(g.readings.is_empty(), "a month is no Quoalise step");
        assert_eq!(g.unit, "VA");
        assert_eq!(g.maxima.len(), 2);
        assert_eq!(
            g.maxima[0].start,
            crate::time::day_start(date(2026, 1, 1)).unwrap()
        );
        assert_eq!(g.maxima[0].value, Some(6200.0));
        assert_eq!(g.maxima[0].reached, None);
        assert_eq!(g.maxima[1].value, None, "under 7 daily values: nil");
    }

    #[test]
    fn an_answer_about_another_point_is_refused() {
        let day = date(2026, 6, 1);
        let request = MeasuresRequest::curve(
            "30001642617347".parse().unwrap(),
            day,
            day.tomorrow().unwrap(),
        );
        let e = parse(&request, &answer(&[], None)).unwrap_err();
        assert!(e.0.contains("09111642617347"), "{e}");
    }
}

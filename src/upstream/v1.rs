//! The v1 family of Data Connect metering APIs, v3, v4 and v5: one dialect
//! ([`Metering`]) described per generation by where its data lives and how it places
//! readings in time. Adding a generation of this family is one more constant beside
//! [`V3`], [`V4`] and [`V5`] (and its arm in [`super::dialect`]).
//!
//! Paths: v3 and v4 serve `/<version>/metering_data/<resource>`, v5 one service per
//! series, `/metering_data_<service>/v5/<resource>`; all take
//! `?usage_point_id=…&start=…&end=…`.
//!
//! Answers: one `meter_reading` object, which the generations fill alike except for
//! how a reading is placed in time:
//!
//! - v4 and v5 date each reading (`date`): Paris local time at the END of a
//!   load-curve interval, with its own `interval_length` (`PT30M`…); the day for
//!   daily energy; the instant of the peak for the daily maximum power.
//! - v3 ranks them (`rank`): rank n is the n-th interval after Paris midnight of the
//!   answer's `start` day, `reading_type.interval_length` long (in seconds); for daily
//!   series, the n-th day.
//!
//! v5 wraps the object as `{"meter_reading": …}`, v3 as `{"usage_point":
//! [{"meter_reading": …}]}`; both wrappers are read for every generation.

use jiff::ToSpan;
use jiff::civil::Date;
use serde::Deserialize;

use super::normalise::{self, At, ShapeError, check_prm, day_of, from_json, unit_scale, value};
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::contract::{Activation, Address, Changed, Coded, Contract, LastChange, Power};
use crate::quoalise::{Prm, Reading, Series, SeriesKind, Step};
use crate::time::{LoadCurveConverter, daily_reading, day_start, parse_date, parse_local_datetime};

/// How readings are placed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// v4, v5: `date` on each reading.
    Date,
    /// v3: `rank` from the answer's start day.
    Rank,
}

/// How a generation lays out its data paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `/<version>/metering_data/<resource>` (v3, v4).
    MeteringData,
    /// `/metering_data_<service>/<version>/<resource>` (v5): one service per series.
    ServicePerSeries,
}

/// One generation of the v1 family: everything that differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    pub generation: ApiGeneration,
    /// The version in its paths (`v3`…).
    pub version: &'static str,
    pub layout: Layout,
    pub timing: Timing,
}

/// Metering v3, the seed's (retired 2023): readings placed by `rank` (rank 1 =
/// 00:00–00:30 of the start day for a 30-minute meter), per-consent tokens as in v4.
pub const V3: Metering = Metering {
    generation: ApiGeneration::V3,
    version: "v3",
    layout: Layout::MeteringData,
    timing: Timing::Rank,
};

/// Metering v4 (retired 2023): dated readings like v5, and OAuth tokens PER CONSENT
/// (authorization_code, then refresh_token), which the shared machinery keeps in the
/// store.
pub const V4: Metering = Metering {
    generation: ApiGeneration::V4,
    version: "v4",
    layout: Layout::MeteringData,
    timing: Timing::Date,
};

/// Metering v5 (2023 to October 2026): one application token, dated readings.
/// Consent through the v1 page, whose redirect carries the PRMs in `usage_point_id`.
pub const V5: Metering = Metering {
    generation: ApiGeneration::V5,
    version: "v5",
    layout: Layout::ServicePerSeries,
    timing: Timing::Date,
};

/// The names of a series in v1 paths: its resource under `metering_data`, its v5
/// service, and its resource under that service. The v1 family has no index
/// ([`Metering::serves`] says so, and the client asks nothing): the index series
/// get the names of the daily energy, never called.
fn names(series: Series) -> (&'static str, &'static str, &'static str) {
    match series {
        Series::EnergyIndex(d) | Series::ClassIndex(d, _) | Series::ClassEnergyDaily(d, _) => {
            names(Series::daily_energy(d))
        }
        // Only SGE serves corrected and reactive curves: never called.
        Series::CorrectedPower(d) => names(Series::load_curve(d)),
        Series::ReactivePower(_) => names(Series::ConsumptionPower),
        Series::ConsumptionPower => ("consumption_load_curve", "clc", "consumption_load_curve"),
        Series::ProductionPower => ("production_load_curve", "plc", "production_load_curve"),
        Series::ConsumptionEnergyDaily => ("daily_consumption", "dc", "daily_consumption"),
        Series::ProductionEnergyDaily => ("daily_production", "dp", "daily_production"),
        Series::ConsumptionMaxPower => (
            "consumption_max_power",
            "dcmp",
            "daily_consumption_max_power",
        ),
    }
}

impl Metering {
    /// The data path of `series`.
    pub fn path(&self, series: Series) -> String {
        let (resource, service, service_resource) = names(series);
        let version = self.version;
        match self.layout {
            Layout::MeteringData => format!("/{version}/metering_data/{resource}"),
            Layout::ServicePerSeries => {
                format!("/metering_data_{service}/{version}/{service_resource}")
            }
        }
    }
}

impl Dialect for Metering {
    fn generation(&self) -> ApiGeneration {
        self.generation
    }

    /// Everything but the indexes, which only the 2026 API serves.
    fn serves(&self, series: Series) -> bool {
        series.kind() != SeriesKind::Index && !series.is_derived() && !series.is_sge_only()
    }

    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall {
        DataCall::new(
            self.path(series),
            vec![
                ("usage_point_id", prm.to_string()),
                ("start", from.to_string()),
                ("end", to.to_string()),
            ],
        )
    }

    /// Read a `meter_reading` answer (either wrapper) placing readings by
    /// `self.timing`.
    fn parse(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<Reading>, ShapeError> {
        let envelope: Envelope = from_json(body, "metering_data")?;
        let readings = match (envelope.meter_reading, envelope.usage_point) {
            (Some(meter_reading), _) => vec![meter_reading],
            (None, Some(points)) => points.into_iter().map(|p| p.meter_reading).collect(),
            (None, None) => {
                return Err(ShapeError::new(
                    "not a metering_data answer: neither meter_reading nor usage_point",
                ));
            }
        };
        let mut out = Vec::new();
        for meter_reading in &readings {
            check_prm(meter_reading.usage_point_id.as_deref(), prm)?;
            out.extend(convert(self.timing, series, meter_reading, from)?);
        }
        normalise::finish(out, from, to)
    }
}

#[derive(Deserialize)]
struct Envelope {
    meter_reading: Option<MeterReading>,
    usage_point: Option<Vec<UsagePoint>>,
}

#[derive(Deserialize)]
struct UsagePoint {
    meter_reading: MeterReading,
}

#[derive(Deserialize)]
struct MeterReading {
    usage_point_id: Option<String>,
    start: Option<String>,
    reading_type: Option<ReadingType>,
    #[serde(default)]
    interval_reading: Vec<IntervalReading>,
}

#[derive(Deserialize)]
struct ReadingType {
    unit: Option<String>,
    interval_length: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IntervalReading {
    value: Option<serde_json::Value>,
    date: Option<String>,
    rank: Option<serde_json::Value>,
    interval_length: Option<serde_json::Value>,
}

fn convert(
    timing: Timing,
    series: Series,
    mr: &MeterReading,
    asked_from: Date,
) -> Result<Vec<Reading>, ShapeError> {
    let reading_type = mr.reading_type.as_ref();
    let scale = unit_scale(series, reading_type.and_then(|t| t.unit.as_deref()))?;
    let default_step = reading_type.and_then(|t| t.interval_length.as_ref());
    let first_day = match mr.start.as_deref() {
        Some(s) if !s.trim().is_empty() => parse_date(s.trim())?,
        _ => asked_from,
    };
    let mut converter = LoadCurveConverter::new();
    let mut out = Vec::with_capacity(mr.interval_reading.len());
    for reading in &mr.interval_reading {
        let at = match (&reading.date, &reading.rank) {
            (Some(date), _) => At::Date(date),
            (None, Some(rank)) => At::Rank(rank),
            (None, None) => At::Unplaced,
        };
        let v = value(reading.value.as_ref(), scale, at)?;
        let rank = match (timing, &reading.rank) {
            (Timing::Rank, Some(raw)) => Some(rank_of(raw, at)?),
            _ => None,
        };
        if normalise::is_daily(series) {
            let day = match (rank, &reading.date) {
                (_, Some(date)) => day_of(date)?,
                (Some(n), None) => first_day
                    .checked_add((n - 1).days())
                    .map_err(|e| ShapeError(format!("{at}: {e}")))?,
                (None, None) => return Err(ShapeError(format!("{at}: no date"))),
            };
            out.push(daily_reading(day, v)?);
            continue;
        }
        let step_raw = reading
            .interval_length
            .as_ref()
            .or(default_step)
            .ok_or_else(|| ShapeError(format!("{at} has no interval_length")))?;
        let step: Step = normalise::step(step_raw)?;
        let start = match (timing, rank, &reading.date) {
            (Timing::Rank, Some(n), _) => {
                let seconds = step.seconds().unwrap_or(86_400);
                day_start(first_day)? + (n - 1) * seconds
            }
            (Timing::Rank, None, _) => {
                return Err(ShapeError(format!("{at}: v3 readings carry a rank")));
            }
            (Timing::Date, _, Some(date)) => {
                converter.start_of(parse_local_datetime(date.trim())?, step)?
            }
            (Timing::Date, _, None) => return Err(ShapeError(format!("{at}: no date"))),
        };
        out.push(Reading {
            start,
            step,
            value: v,
        });
    }
    Ok(out)
}

fn rank_of(raw: &serde_json::Value, at: At<'_>) -> Result<i64, ShapeError> {
    let n = match raw {
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(ShapeError(format!(
            "{at}: rank {raw} is not a positive integer"
        ))),
    }
}

// ------------------------------------------------------- v5 customer APIs
//
// `customers_upc/v5/usage_points/contracts` and
// `customers_upa/v5/usage_points/addresses` (PRM in `usage_point_id`) both answer
// `{"customer": {"customer_id", "usage_points": [{"usage_point": {…}, …}]}}`.
// Only the usage point's own data are read (never the customer's id).

#[derive(Deserialize)]
struct CustomerBody {
    customer: CustomerPoints,
}

#[derive(Deserialize)]
struct CustomerPoints {
    #[serde(default)]
    usage_points: Vec<UsagePointEntry>,
}

#[derive(Deserialize)]
struct UsagePointEntry {
    usage_point: Option<CustomerUsagePoint>,
    contracts: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CustomerUsagePoint {
    usage_point_id: Option<String>,
    usage_point_status: Option<String>,
    meter_type: Option<String>,
    usage_point_addresses: Option<V5Address>,
}

#[derive(Deserialize)]
struct V5Contract {
    segment: Option<String>,
    subscribed_power: Option<String>,
    last_activation_date: Option<String>,
    distribution_tariff: Option<String>,
    offpeak_hours: Option<String>,
    last_distribution_tariff_change_date: Option<String>,
}

#[derive(Deserialize)]
struct V5Address {
    street: Option<String>,
    locality: Option<String>,
    postal_code: Option<String>,
    insee_code: Option<String>,
    city: Option<String>,
    country: Option<String>,
}

/// Text that is there: trimmed, not empty.
fn present(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The entry of `prm` among a customer's usage points: the one with its id, or
/// the only one when none says which it is.
fn entry_of<'a>(
    body: &'a CustomerBody,
    prm: &Prm,
    format: &str,
) -> Result<&'a UsagePointEntry, ShapeError> {
    let points = &body.customer.usage_points;
    let id = |e: &UsagePointEntry| {
        e.usage_point
            .as_ref()
            .and_then(|p| p.usage_point_id.as_deref())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    };
    if let Some(entry) = points
        .iter()
        .find(|e| id(e).as_deref() == Some(prm.as_str()))
    {
        return Ok(entry);
    }
    match points.as_slice() {
        [only] if id(only).is_none() => Ok(only),
        [] => Err(ShapeError(format!("{format} lists no usage point"))),
        _ => Err(ShapeError(format!(
            "{format} does not list PRM {prm} (it lists {})",
            points
                .iter()
                .map(|e| id(e).unwrap_or_else(|| "one without id".to_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Reads a `customers_upc/v5/usage_points/contracts` answer into `contract`:
/// segment, subscribed power (`9 kVA`; the API's unit is kVA), tariff code,
/// off-peak hours, meter type, services level (`com`, `no_com`), last activation
/// and last tariff change.
pub fn read_v5_contracts(
    body: &[u8],
    prm: &Prm,
    contract: &mut Contract,
) -> Result<(), ShapeError> {
    const FORMAT: &str = "customers_upc/v5/usage_points/contracts";
    let answer: CustomerBody = from_json(body, FORMAT)?;
    let entry = entry_of(&answer, prm, FORMAT)?;
    if let Some(point) = &entry.usage_point {
        if let Some(kind) = present(&point.meter_type) {
            contract.meter_type = Some(Coded::code(kind));
        }
        if let Some(status) = present(&point.usage_point_status) {
            contract.services_level = Some(Coded::code(status));
        }
    }
    // `contracts` is an object in the openapi; a list is read as its first item.
    let contracts = match &entry.contracts {
        None | Some(serde_json::Value::Null) => return Ok(()),
        Some(serde_json::Value::Array(list)) => match list.first() {
            Some(first) => first.clone(),
            None => return Ok(()),
        },
        Some(one) => one.clone(),
    };
    let c: V5Contract = serde_json::from_value(contracts)
        .map_err(|e| ShapeError(format!("contracts of {FORMAT}: {e}")))?;
    if let Some(segment) = present(&c.segment) {
        contract.segments.push(segment);
    }
    if let Some(power) = present(&c.subscribed_power) {
        let (value, unit) = match power.split_once(char::is_whitespace) {
            Some((value, unit)) => (value.to_owned(), unit.trim().to_owned()),
            None => (power.clone(), "kVA".to_owned()),
        };
        let value = normalise::decimal(&serde_json::Value::String(value), "subscribed_power")
            .map_err(|_| {
                ShapeError(format!(
                    "subscribed_power {power:?} is not \"<number> kVA\""
                ))
            })?;
        if unit.is_empty() {
            return Err(ShapeError(format!(
                "subscribed_power {power:?} has no unit"
            )));
        }
        contract.subscribed_power = Some(Power { value, unit });
    }
    if let Some(tariff) = present(&c.distribution_tariff) {
        contract.tariff_option = Some(Coded::code(tariff));
    }
    if let Some(hours) = present(&c.offpeak_hours) {
        contract.off_peak_hours = Some(normalise::off_peak_hours(&hours));
    }
    if let Some(raw) = present(&c.last_activation_date) {
        contract.activations.push(Activation {
            direction: None,
            date: normalise::contract_day(&raw)?,
        });
    }
    if let Some(raw) = present(&c.last_distribution_tariff_change_date) {
        contract.last_changes.push(LastChange {
            of: Changed::TariffOption,
            date: normalise::contract_day(&raw)?,
        });
    }
    Ok(())
}

/// Reads a `customers_upa/v5/usage_points/addresses` answer into `contract`:
/// the meter's address (street, locality, postal code, city, INSEE code,
/// country; not its coordinates).
pub fn read_v5_addresses(
    body: &[u8],
    prm: &Prm,
    contract: &mut Contract,
) -> Result<(), ShapeError> {
    const FORMAT: &str = "customers_upa/v5/usage_points/addresses";
    let answer: CustomerBody = from_json(body, FORMAT)?;
    let entry = entry_of(&answer, prm, FORMAT)?;
    let Some(a) = entry
        .usage_point
        .as_ref()
        .and_then(|p| p.usage_point_addresses.as_ref())
    else {
        return Ok(());
    };
    let address = Address {
        street: present(&a.street),
        locality: present(&a.locality),
        postal_code: present(&a.postal_code),
        city: present(&a.city),
        insee_code: present(&a.insee_code),
        country: present(&a.country),
    };
    if address != Address::default() {
        contract.address = Some(address);
    }
    Ok(())
}

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
        series.kind() != SeriesKind::Index && !series.is_derived()
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

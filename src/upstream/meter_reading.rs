//! The `meter_reading` answer of the v3, v4 and v5 metering APIs, which differ only
//! in how a reading is placed in time:
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
use crate::quoalise::{Prm, Reading, Series, Step};
use crate::time::{LoadCurveConverter, daily_reading, day_start, parse_date, parse_local_datetime};

/// How readings are placed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// v4, v5: `date` on each reading.
    Date,
    /// v3: `rank` from the answer's start day.
    Rank,
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

/// Read a `meter_reading` answer for `series` of `prm` over `[from, to[`.
pub fn parse_readings(
    timing: Timing,
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
        out.extend(convert(timing, series, meter_reading, from)?);
    }
    normalise::finish(out, from, to)
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

//! Helpers every generation's parser shares to turn Enedis values into
//! [`Reading`]s: values (strings, numbers or null), units, steps, times, and the
//! final trimming to the asked days.
//!
//! Time conversion itself lives in `crate::time` (end-stamped local load-curve times,
//! the repeated autumn hour, Paris days); this module only feeds it.

use jiff::civil::Date;

use crate::quoalise::{Reading, Series, SeriesKind, Step};
use crate::time::{self, day_start};

/// Why a 2xx body cannot be read as readings; the text says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl ShapeError {
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError(message.into())
    }
}

impl From<time::TimeError> for ShapeError {
    fn from(e: time::TimeError) -> Self {
        ShapeError(e.to_string())
    }
}

/// Deserialize JSON, naming the format on failure.
pub fn from_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    format: &str,
) -> Result<T, ShapeError> {
    serde_json::from_slice(super::error::strip_bom(body))
        .map_err(|e| ShapeError(format!("not a {format} answer: {e}")))
}

/// Where a reading sits in an answer, for error messages; only formatted when an
/// error is built, so reading thousands of points allocates nothing for it.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// A 2026 point, by its `d`.
    Point(&'a str),
    /// A v4/v5 reading, by its `date`.
    Date(&'a str),
    /// A v3 reading, by its `rank`.
    Rank(&'a serde_json::Value),
    /// A reading with neither.
    Unplaced,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Point(d) => write!(f, "point d={d:?}"),
            At::Date(d) => write!(f, "reading date={d:?}"),
            At::Rank(r) => write!(f, "reading rank={r}"),
            At::Unplaced => f.write_str("a reading without date or rank"),
        }
    }
}

/// A reading's value: a decimal string, a number, or null/empty for a missing value
/// (which stays missing: never zero). `scale` converts kW to W and the like.
pub fn value(
    raw: Option<&serde_json::Value>,
    scale: f64,
    at: At<'_>,
) -> Result<Option<f64>, ShapeError> {
    let number = match raw {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(other) => {
            return Err(ShapeError(format!(
                "the value at {at} is {other}, not a number"
            )));
        }
    };
    match number {
        Some(n) if n.is_finite() => Ok(Some(n * scale)),
        _ => Err(ShapeError(format!(
            "the value at {at} ({}) is not a number",
            raw.map(|v| v.to_string()).unwrap_or_default()
        ))),
    }
}

/// The factor from the unit Enedis announced to the series' unit (W, Wh, VA);
/// `None` announced means the series' unit.
pub fn unit_scale(series: Series, announced: Option<&str>) -> Result<f64, ShapeError> {
    let want = series.unit();
    let Some(unit) = announced.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(1.0);
    };
    if unit == want {
        return Ok(1.0);
    }
    if unit.strip_prefix('k') == Some(want) {
        return Ok(1000.0);
    }
    Err(ShapeError(format!(
        "unit {unit:?} where {want} was expected for {series}"
    )))
}

/// A load-curve step, `PT30M` and the like, or a number of seconds (v3's
/// `interval_length`).
pub fn step(raw: &serde_json::Value) -> Result<Step, ShapeError> {
    let seconds = match raw {
        serde_json::Value::String(s) => {
            if let Ok(step) = s.trim().parse::<Step>() {
                return Ok(step);
            }
            s.trim().parse::<i64>().ok()
        }
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match seconds {
        Some(s) if s > 0 && s % 60 == 0 && s <= 86_400 => u16::try_from(s / 60)
            .map(Step::Minutes)
            .map_err(|_| bad_step(raw)),
        _ => Err(bad_step(raw)),
    }
}

fn bad_step(raw: &serde_json::Value) -> ShapeError {
    ShapeError(format!(
        "step {raw} is not a duration like PT30M or a number of seconds"
    ))
}

/// The Paris day of a daily value: `YYYY-MM-DD`, or `YYYY-MM-DD hh:mm:ss` (the
/// instant of a daily maximum), whose day is taken.
pub fn day_of(raw: &str) -> Result<Date, ShapeError> {
    let raw = raw.trim();
    if raw.len() > 10 {
        Ok(time::parse_local_datetime(raw)?.date())
    } else {
        Ok(time::parse_date(raw)?)
    }
}

/// Keep the readings inside the asked days `[from, to[`, ordered, without duplicates.
pub fn finish(
    mut readings: Vec<Reading>,
    from: Date,
    to: Date,
) -> Result<Vec<Reading>, ShapeError> {
    let window = time::Window {
        start: day_start(from)?,
        end: day_start(to)?,
    };
    window.retain(&mut readings);
    time::sort_dedup(&mut readings);
    Ok(readings)
}

/// Whether a series is read by day (daily energy and daily maximum power).
pub fn is_daily(series: Series) -> bool {
    series.kind() != SeriesKind::LoadCurve
}

/// Refuse an answer about another PRM than the one asked.
pub fn check_prm(answered: Option<&str>, asked: &crate::quoalise::Prm) -> Result<(), ShapeError> {
    match answered.map(str::trim) {
        Some(id) if !id.is_empty() && id != asked.as_str() => Err(ShapeError(format!(
            "the answer is about PRM {id}, not the PRM asked ({asked})"
        ))),
        _ => Ok(()),
    }
}

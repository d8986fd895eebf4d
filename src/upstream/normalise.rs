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

// ------------------------------------------------------------- contract data

/// The Paris day of a contract date: `2024-10-12T00:00:00+0200` (the 2026 ITC
/// APIs: an instant, Paris midnight), `2013-08-14+01:00` (v5: a day with the
/// offset of its midnight) or `2013-08-14`.
pub fn contract_day(raw: &str) -> Result<Date, ShapeError> {
    let raw = raw.trim();
    let bad = |why: &str| ShapeError(format!("date {raw:?} {why}"));
    if raw.len() > 10 && raw.as_bytes().get(10) == Some(&b'T') {
        for format in ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%:z"] {
            if let Ok(instant) = jiff::Timestamp::strptime(format, raw) {
                return Ok(time::PARIS.to_datetime(instant).date());
            }
        }
        return Err(bad("is not YYYY-MM-DDThh:mm:ss+hhmm"));
    }
    let day = raw.get(..10).ok_or_else(|| bad("is not YYYY-MM-DD"))?;
    let offset = &raw[10..];
    let offset_ok = offset.is_empty()
        || (offset.len() == 6
            && matches!(offset.as_bytes()[0], b'+' | b'-')
            && offset.as_bytes()[3] == b':'
            && offset
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 0 || i == 3 || b.is_ascii_digit()));
    if !offset_ok {
        return Err(bad("is not YYYY-MM-DD or YYYY-MM-DD+hh:mm"));
    }
    Ok(time::parse_date(day)?)
}

/// A decimal number as Enedis writes a power (`12`, `36.5`), trimmed; it is kept
/// as written.
pub fn decimal(raw: &serde_json::Value, what: &str) -> Result<String, ShapeError> {
    let text = match raw {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(ShapeError(format!("{what} is {other}, not a number"))),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(ShapeError(format!("{what} {text:?} is not a number")));
    }
    Ok(text)
}

/// Off-peak hours as Enedis writes them (`HC (22H00-6H00;12H30-14H30)`, v5's
/// `offpeak_hours` and 2026's `plageHeuresCreuses`), with their ranges in Paris
/// local time when the text can be read; otherwise without ranges (the text is
/// kept as is: it is what Enedis says).
pub fn off_peak_hours(raw: &str) -> crate::quoalise::contract::OffPeakHours {
    use crate::quoalise::contract::OffPeakHours;
    OffPeakHours {
        raw: raw.to_owned(),
        ranges: off_peak_ranges(raw).unwrap_or_default(),
    }
}

fn off_peak_ranges(raw: &str) -> Option<Vec<crate::quoalise::contract::TimeRange>> {
    use crate::quoalise::contract::TimeRange;
    let mut text = raw.trim();
    if let Some(rest) = text.strip_prefix("HC").or_else(|| text.strip_prefix("hc")) {
        text = rest.trim_start();
    }
    if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        text = inner;
    }
    let mut ranges = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (start, end) = part.split_once('-')?;
        let range = TimeRange {
            start: clock_minutes(start)?,
            end: clock_minutes(end)?,
        };
        if range.start == range.end {
            return None;
        }
        ranges.push(range);
    }
    (!ranges.is_empty()).then_some(ranges)
}

/// `22H00`, `6h30`, `7:30`, `22H`: minutes after midnight (`24H00` is 1440).
fn clock_minutes(raw: &str) -> Option<u16> {
    let raw = raw.trim();
    let split = raw.find(['H', 'h', ':'])?;
    let (hours, minutes) = (&raw[..split], &raw[split + 1..]);
    let number = |s: &str, max_len: usize| -> Option<u16> {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let h = number(hours, 2)?;
    let m = if minutes.is_empty() {
        0
    } else if minutes.len() == 2 {
        number(minutes, 2)?
    } else {
        return None;
    };
    match (h, m) {
        (0..=23, 0..=59) | (24, 0) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod contract_tests {
    use super::*;
    use crate::quoalise::contract::TimeRange;
    use jiff::civil::date;

    fn ranges(raw: &str) -> Vec<(u16, u16)> {
        off_peak_hours(raw)
            .ranges
            .iter()
            .map(|r: &TimeRange| (r.start, r.end))
            .collect()
    }

    #[test]
    fn off_peak_hours_as_enedis_writes_them() {
        assert_eq!(ranges("HC (22H00-6H00)"), [(1320, 360)]);
        assert_eq!(ranges("HC (23h00-7h30)"), [(1380, 450)]);
        assert_eq!(
            ranges("HC (1H30-7H30;12H30-14H30)"),
            [(90, 450), (750, 870)]
        );
        assert_eq!(ranges("22:00-06:00"), [(1320, 360)]);
        assert_eq!(ranges("HC (20H00-24H00)"), [(1200, 1440)]);
        // Unreadable: kept as text, no ranges.
        for raw in [
            "",
            "HC",
            "HC ()",
            "HC (22H00)",
            "HC (25H00-6H00)",
            "HC (22H00-6H61)",
            "heures creuses la nuit",
            "HC (22H00-22H00)",
            "HC (22H000-6H00)",
        ] {
            let hours = off_peak_hours(raw);
            assert!(hours.ranges.is_empty(), "{raw:?}: {:?}", hours.ranges);
            assert_eq!(hours.raw, raw);
        }
    }

    #[test]
    fn contract_dates_are_paris_days() {
        assert_eq!(
            contract_day("2024-10-12T00:00:00+0200").unwrap(),
            date(2024, 10, 12)
        );
        assert_eq!(
            contract_day("2026-02-11T00:00:00+0100").unwrap(),
            date(2026, 2, 11)
        );
        assert_eq!(contract_day("2013-08-14+01:00").unwrap(), date(2013, 8, 14));
        assert_eq!(contract_day("2013-08-14").unwrap(), date(2013, 8, 14));
        for bad in [
            "2013-08-14+0100x",
            "14/08/2013",
            "2013-08-14T00:00",
            "",
            "2013-13-01",
        ] {
            assert!(contract_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn powers_are_decimals() {
        use serde_json::json;
        assert_eq!(decimal(&json!("12"), "p").unwrap(), "12");
        assert_eq!(decimal(&json!(" 36.5 "), "p").unwrap(), "36.5");
        assert_eq!(decimal(&json!(9), "p").unwrap(), "9");
        for bad in [
            json!("9 kVA"),
            json!(""),
            json!("-3"),
            json!("1e3"),
            json!(null),
        ] {
            assert!(decimal(&bad, "p").is_err(), "{bad}");
        }
    }
}

//! Time conventions: Enedis speaks Paris local time, Quoalise speaks UTC.
//!
//! Enedis stamps load-curve values at the END of their interval, in Europe/Paris
//! local time without an offset. Quoalise stamps every value at the START of the
//! period it covers, in UTC seconds. The autumn hour that happens twice is resolved
//! by position (the second occurrence is the later offset); the spring hour that does
//! not exist never appears. Daily values are dated by Paris calendar day. All of this
//! goes through the IANA time-zone database bundled at compile time (`jiff`), never
//! through hand-written offsets.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{self, TimeZone};
use jiff::{Timestamp, ToSpan};

use crate::quoalise::{Reading, Step};

/// Europe/Paris, compiled in: no dependency on the host's tzdata.
pub static PARIS: TimeZone = tz::get!("Europe/Paris");

/// A time value that could not be read or converted; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("invalid date {input:?}: expected YYYY-MM-DD ({reason})")]
    Date { input: String, reason: String },
    #[error("invalid local date-time {input:?}: expected \"YYYY-MM-DD hh:mm:ss\" ({reason})")]
    LocalDateTime { input: String, reason: String },
    #[error(
        "invalid date-time {input:?}: expected ISO 8601 with an offset, e.g. 2021-12-01T00:00:00+01:00 ({reason})"
    )]
    Instant { input: String, reason: String },
    #[error("the period is empty: start {start} is not before end {end}")]
    EmptyWindow { start: String, end: String },
    #[error("date out of the supported range: {0}")]
    OutOfRange(String),
    #[error("a daily value cannot be converted with step {0}")]
    StepMismatch(Step),
}

fn shorten(input: &str) -> String {
    input.chars().take(64).collect()
}

/// Parse a strict `YYYY-MM-DD` calendar date.
pub fn parse_date(input: &str) -> Result<Date, TimeError> {
    let err = |reason: &str| TimeError::Date {
        input: shorten(input),
        reason: reason.to_owned(),
    };
    let b = input.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err("wrong shape"));
    }
    if !b
        .iter()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return Err(err("non-digit character"));
    }
    input.parse::<Date>().map_err(|e| err(&e.to_string()))
}

/// Parse a strict `YYYY-MM-DD hh:mm:ss` local date-time, as Enedis writes them.
pub fn parse_local_datetime(input: &str) -> Result<DateTime, TimeError> {
    let err = |reason: &str| TimeError::LocalDateTime {
        input: shorten(input),
        reason: reason.to_owned(),
    };
    let b = input.as_bytes();
    if b.len() != 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return Err(err("wrong shape"));
    }
    let date = parse_date(&input[..10]).map_err(|e| err(&e.to_string()))?;
    let field = |range: std::ops::Range<usize>| -> Result<i8, TimeError> {
        let part = &input[range];
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("non-digit character in the time"));
        }
        part.parse::<i8>().map_err(|_| err("bad time field"))
    };
    let (h, m, s) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let time = jiff::civil::Time::new(h, m, s, 0).map_err(|e| err(&e.to_string()))?;
    Ok(date.to_datetime(time))
}

/// Parse an ISO 8601 / RFC 3339 date-time that carries an offset (`Z` or `±hh:mm`),
/// as Quoalise peers send `start_time` and `end_time`. A naive date-time is refused:
/// its meaning would depend on our time zone.
pub fn parse_instant(input: &str) -> Result<Timestamp, TimeError> {
    let trimmed = input.trim();
    trimmed
        .parse::<Timestamp>()
        .map_err(|e| TimeError::Instant {
            input: shorten(input),
            // `get`, not indexing: byte 10 may fall inside a multi-byte character
            // of what a peer sent (found by fuzzing).
            reason: if trimmed.len() >= 10
                && !trimmed.contains(['+', 'Z', 'z'])
                && trimmed
                    .get(10..)
                    .is_some_and(|rest| rest.rfind('-').is_none())
            {
                "no offset: add Z or ±hh:mm".to_owned()
            } else {
                e.to_string()
            },
        })
}

/// UTC seconds of Paris midnight starting `date` (midnight always exists in Paris).
pub fn day_start(date: Date) -> Result<i64, TimeError> {
    PARIS
        .to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map(Timestamp::as_second)
        .map_err(|e| TimeError::OutOfRange(e.to_string()))
}

/// UTC seconds of an instant Enedis wrote in Paris local time without an offset
/// (an index's `d`). A local time of the repeated autumn hour is read as its first
/// occurrence, one of the skipped spring hour as the instant after the gap
/// (`compatible`); a Linky's daily counters are read at midnight, which is never
/// either.
pub fn local_instant(local: DateTime) -> Result<i64, TimeError> {
    PARIS
        .to_ambiguous_timestamp(local)
        .compatible()
        .map(Timestamp::as_second)
        .map_err(|e| TimeError::OutOfRange(e.to_string()))
}

/// The Paris calendar date containing the UTC instant `seconds`.
pub fn paris_date(seconds: i64) -> Result<Date, TimeError> {
    let ts = Timestamp::from_second(seconds).map_err(|e| TimeError::OutOfRange(e.to_string()))?;
    Ok(PARIS.to_datetime(ts).date())
}

/// Today's date in Paris at instant `now`.
pub fn paris_today(now: Timestamp) -> Date {
    PARIS.to_datetime(now).date()
}

/// The next calendar day.
pub fn next_day(date: Date) -> Result<Date, TimeError> {
    date.tomorrow()
        .map_err(|e| TimeError::OutOfRange(e.to_string()))
}

/// Add (or with a negative count, subtract) whole days.
pub fn add_days(date: Date, days: i64) -> Result<Date, TimeError> {
    date.checked_add(days.days())
        .map_err(|e| TimeError::OutOfRange(e.to_string()))
}

/// Converts end-stamped Paris local load-curve times into start-stamped UTC readings,
/// resolving the repeated autumn hour by position: a local time that occurs twice is
/// read as its first occurrence unless the previous reading already reached it.
#[derive(Debug, Default)]
pub struct LoadCurveConverter {
    last_end: Option<Timestamp>,
}

impl LoadCurveConverter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Convert one reading, given in upstream order; returns the UTC start second.
    pub fn start_of(&mut self, local_end: DateTime, step: Step) -> Result<i64, TimeError> {
        let step_seconds = step.seconds().ok_or(TimeError::StepMismatch(step))?;
        let ambiguous = PARIS.to_ambiguous_timestamp(local_end);
        let map = |e: jiff::Error| TimeError::OutOfRange(e.to_string());
        let end = if ambiguous.is_ambiguous() {
            let earlier = ambiguous.earlier().map_err(map)?;
            match self.last_end {
                Some(last) if last >= earlier => ambiguous.later().map_err(map)?,
                _ => earlier,
            }
        } else {
            // A time inside the spring-forward gap does not come from a well-behaved
            // meter; "compatible" reads it with the offset before the gap, which is the
            // instant the interval really ended.
            ambiguous.compatible().map_err(map)?
        };
        self.last_end = Some(end);
        Ok(end.as_second() - step_seconds)
    }
}

/// Convert a sequence of end-stamped local readings (in upstream order) into
/// start-stamped UTC readings, ordered and without duplicates.
pub fn convert_load_curve(
    points: impl IntoIterator<Item = (DateTime, Step, Option<f64>)>,
) -> Result<Vec<Reading>, TimeError> {
    let mut converter = LoadCurveConverter::new();
    let mut readings = points
        .into_iter()
        .map(|(end, step, value)| {
            Ok(Reading {
                start: converter.start_of(end, step)?,
                step,
                value,
            })
        })
        .collect::<Result<Vec<_>, TimeError>>()?;
    sort_dedup(&mut readings);
    Ok(readings)
}

/// A daily value, stamped at the Paris midnight starting its day.
pub fn daily_reading(date: Date, value: Option<f64>) -> Result<Reading, TimeError> {
    Ok(Reading {
        start: day_start(date)?,
        step: Step::Day,
        value,
    })
}

/// Order readings by start and keep the first of any duplicates.
pub fn sort_dedup(readings: &mut Vec<Reading>) {
    readings.sort_by_key(|r| r.start);
    readings.dedup_by_key(|r| r.start);
}

/// A requested period `[start, end[` in UTC seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// A window from two instants; refuses an empty or reversed one.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Window, TimeError> {
        if start >= end {
            return Err(TimeError::EmptyWindow {
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        Ok(Window {
            start: start.as_second(),
            end: end.as_second(),
        })
    }

    /// The window of Paris calendar days `[start, end[`, as legacy commands send them.
    pub fn from_dates(start: Date, end: Date) -> Result<Window, TimeError> {
        if start >= end {
            return Err(TimeError::EmptyWindow {
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        Ok(Window {
            start: day_start(start)?,
            end: day_start(end)?,
        })
    }

    /// The Paris dates to ask upstream, `[first, last[`: every day that holds a
    /// reading starting inside the window.
    pub fn paris_dates(&self) -> Result<(Date, Date), TimeError> {
        let first = paris_date(self.start)?;
        let last_instant = self.end - 1;
        let last = next_day(paris_date(last_instant)?)?;
        Ok((first, last))
    }

    /// Whether a reading starting at `start` belongs to the window.
    pub fn contains(&self, start: i64) -> bool {
        self.start <= start && start < self.end
    }

    /// Keep only the readings starting inside the window.
    pub fn retain(&self, readings: &mut Vec<Reading>) {
        readings.retain(|r| self.contains(r.start));
    }
}

/// The last day whose data Enedis has published at `now`: yesterday once
/// `publish` (Paris, `subscriptions.publish_time`) is past, the day before
/// until then. What the daily pushes send through.
pub fn due_through(now: Timestamp, publish: Time) -> Date {
    let local = now.to_zoned_datetime(PARIS.clone());
    let today = local.date();
    let back = if local.time() >= publish { -1 } else { -2 };
    add_days(today, back).unwrap_or(today)
}

/// The first day a new subscription is sent, when subscribing at `now`: the
/// latest one published, at once (so the subscriber sees it works), then each
/// new day.
pub fn first_day(now: Timestamp, publish: Time) -> Date {
    due_through(now, publish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn local(s: &str) -> DateTime {
        parse_local_datetime(s).expect("valid local date-time")
    }

    /// End stamps of a whole Paris day at `step` minutes, as Enedis writes them:
    /// from 00:step to 24:00 (written as the next day's 00:00:00), in local time,
    /// including both occurrences of the repeated autumn hour.
    fn enedis_day(day: Date, minutes: i64) -> Vec<DateTime> {
        let start = day_start(day).unwrap();
        let end = day_start(day.tomorrow().unwrap()).unwrap();
        (1..)
            .map(|i| start + i * minutes * 60)
            .take_while(|t| *t <= end)
            .map(|t| PARIS.to_datetime(Timestamp::from_second(t).unwrap()))
            .collect()
    }

    fn convert_day(day: Date, minutes: u16) -> Vec<Reading> {
        let step = Step::Minutes(minutes);
        convert_load_curve(
            enedis_day(day, i64::from(minutes))
                .into_iter()
                .map(|d| (d, step, Some(1.0))),
        )
        .unwrap()
    }

    #[test]
    fn ordinary_day_starts_at_paris_midnight() {
        let readings = convert_day(date(2026, 9, 29), 30);
        assert_eq!(readings.len(), 48);
        // 2026-09-29 00:00 CEST = 2026-09-28T22:00:00Z
        assert_eq!(
            readings[0].start,
            "2026-09-28T22:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        assert!(readings.windows(2).all(|w| w[1].start - w[0].start == 1800));
    }

    #[test]
    fn first_enedis_reading_is_the_first_half_hour() {
        // start=2023-03-01 yields a first reading at "2023-03-01 00:30:00"
        let mut c = LoadCurveConverter::new();
        let start = c
            .start_of(local("2023-03-01 00:30:00"), Step::PT30M)
            .unwrap();
        assert_eq!(
            start,
            "2023-02-28T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
    }

    #[test]
    fn spring_forward_day_has_46_half_hours() {
        let day = date(2026, 3, 29);
        let stamps = enedis_day(day, 30);
        assert_eq!(stamps.len(), 46);
        assert!(
            !stamps.iter().any(|d| d.hour() == 2),
            "02:xx does not exist that day"
        );
        let readings = convert_day(day, 30);
        assert_eq!(readings.len(), 46);
        assert_eq!(readings[0].start, day_start(day).unwrap());
        assert!(readings.windows(2).all(|w| w[1].start - w[0].start == 1800));
        assert_eq!(
            readings[45].start + 1800,
            day_start(date(2026, 3, 30)).unwrap()
        );
    }

    #[test]
    fn fall_back_day_has_50_half_hours_in_order() {
        let day = date(2026, 10, 25);
        let stamps = enedis_day(day, 30);
        assert_eq!(stamps.len(), 50);
        // Both 02:00–03:00 hours are there: 02:00 and 02:30 appear twice each.
        let twice: Vec<_> = stamps.iter().filter(|d| d.hour() == 2).collect();
        assert_eq!(twice.len(), 4);
        let readings = convert_day(day, 30);
        assert_eq!(readings.len(), 50);
        assert!(
            readings.windows(2).all(|w| w[1].start - w[0].start == 1800),
            "strictly consecutive"
        );
        // The readings ending at the first and second local 02:30 are one hour apart.
        let utc = |s: &str| s.parse::<Timestamp>().unwrap().as_second();
        assert!(
            readings
                .iter()
                .any(|r| r.start == utc("2026-10-25T00:00:00Z"))
        ); // 02:00–02:30 CEST
        assert!(
            readings
                .iter()
                .any(|r| r.start == utc("2026-10-25T01:00:00Z"))
        ); // 02:00–02:30 CET
        assert_eq!(
            readings[49].start + 1800,
            day_start(date(2026, 10, 26)).unwrap()
        );
    }

    #[test]
    fn ambiguous_hour_resolved_by_position_from_raw_strings() {
        let mut c = LoadCurveConverter::new();
        let seq = [
            "2026-10-25 01:30:00",
            "2026-10-25 02:00:00",
            "2026-10-25 02:30:00",
            "2026-10-25 02:00:00",
            "2026-10-25 02:30:00",
            "2026-10-25 03:00:00",
        ];
        let starts: Vec<i64> = seq
            .iter()
            .map(|s| c.start_of(local(s), Step::PT30M).unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 1800), "{starts:?}");
    }

    #[test]
    fn ten_and_sixty_minute_meters() {
        let ordinary = date(2026, 6, 10);
        assert_eq!(convert_day(ordinary, 10).len(), 144);
        assert_eq!(convert_day(ordinary, 60).len(), 24);
        assert_eq!(convert_day(date(2026, 3, 29), 10).len(), 138);
        assert_eq!(convert_day(date(2026, 3, 29), 60).len(), 23);
        let autumn10 = convert_day(date(2026, 10, 25), 10);
        assert_eq!(autumn10.len(), 150);
        assert!(autumn10.windows(2).all(|w| w[1].start - w[0].start == 600));
        let autumn60 = convert_day(date(2026, 10, 25), 60);
        assert_eq!(autumn60.len(), 25);
        assert!(autumn60.windows(2).all(|w| w[1].start - w[0].start == 3600));
        assert_eq!(autumn60[0].start, day_start(date(2026, 10, 25)).unwrap());
    }

    #[test]
    fn window_spanning_both_dst_changes() {
        let start = parse_instant("2026-03-28T00:00:00+01:00").unwrap();
        let end = parse_instant("2026-10-27T00:00:00+01:00").unwrap();
        let window = Window::new(start, end).unwrap();
        let (first, last) = window.paris_dates().unwrap();
        assert_eq!((first, last), (date(2026, 3, 28), date(2026, 10, 27)));
        let mut readings = Vec::new();
        let mut day = first;
        while day < last {
            readings.extend(convert_day(day, 30));
            day = day.tomorrow().unwrap();
        }
        sort_dedup(&mut readings);
        // 213 days: 211 ordinary, one of 46 and one of 50 half-hours.
        assert_eq!(readings.len(), 211 * 48 + 46 + 50);
        assert!(readings.windows(2).all(|w| w[1].start - w[0].start == 1800));
        assert_eq!(readings.first().unwrap().start, start.as_second());
        assert_eq!(readings.last().unwrap().start + 1800, end.as_second());
        window.retain(&mut readings);
        assert_eq!(readings.len(), 211 * 48 + 46 + 50);
    }

    #[test]
    fn window_mid_day_asks_whole_days_and_trims() {
        let window = Window::new(
            parse_instant("2026-06-10T12:00:00+02:00").unwrap(),
            parse_instant("2026-06-11T06:00:00Z").unwrap(),
        )
        .unwrap();
        assert_eq!(
            window.paris_dates().unwrap(),
            (date(2026, 6, 10), date(2026, 6, 12))
        );
        let mut readings = convert_day(date(2026, 6, 10), 30);
        readings.extend(convert_day(date(2026, 6, 11), 30));
        window.retain(&mut readings);
        // 12:00 to 24:00 local (24) + 00:00 to 08:00 local (16)
        assert_eq!(readings.len(), 40);
    }

    #[test]
    fn daily_values_are_paris_midnight() {
        let r = daily_reading(date(2026, 10, 25), Some(42.0)).unwrap();
        assert_eq!(
            r.start,
            "2026-10-24T22:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        let r = daily_reading(date(2026, 10, 26), None).unwrap();
        assert_eq!(
            r.start,
            "2026-10-25T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        assert_eq!(r.value, None);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        assert!(
            parse_date("2026-13-01")
                .unwrap_err()
                .to_string()
                .contains("2026-13-01")
        );
        assert!(parse_date("2026-1-01").is_err());
        assert!(parse_date("２026-01-01").is_err());
        assert!(parse_local_datetime("2026-10-25T02:00:00").is_err());
        assert!(parse_local_datetime("2026-10-25 25:00:00").is_err());
        let err = parse_instant("2021-12-01T00:00:00")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no offset"), "{err}");
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2021-12-01T00:00:00.123456+01:00").is_ok());
        assert!(parse_instant("2021-12-01T00:00:00Z").is_ok());
        let err = Window::new(
            parse_instant("2021-12-02T00:00:00Z").unwrap(),
            parse_instant("2021-12-01T00:00:00Z").unwrap(),
        )
        .unwrap_err();
        assert!(matches!(err, TimeError::EmptyWindow { .. }));
    }

    #[test]
    fn yesterday_is_due_from_the_publish_time_paris() {
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        let eight = jiff::civil::time(8, 0, 0, 0);
        // 07:59 Paris (CET) on 29 November: only the 27th is due.
        assert_eq!(
            due_through(at("2026-11-29T06:59:00Z"), eight),
            date(2026, 11, 27)
        );
        assert_eq!(
            due_through(at("2026-11-29T07:00:00Z"), eight),
            date(2026, 11, 28)
        );
        // Summer time: 08:00 Paris is 06:00 UTC.
        assert_eq!(
            due_through(at("2026-07-01T06:00:00Z"), eight),
            date(2026, 6, 30)
        );
        assert_eq!(
            due_through(at("2026-07-01T05:59:59Z"), eight),
            date(2026, 6, 29)
        );
        assert_eq!(
            first_day(at("2026-11-29T06:00:00Z"), eight),
            date(2026, 11, 27)
        );
        assert_eq!(
            first_day(at("2026-11-29T10:00:00Z"), eight),
            date(2026, 11, 28)
        );
    }
}

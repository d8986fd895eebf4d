//! Paris calendar time, as Enedis speaks it: the dates in requests and answers are
//! Europe/Paris days, and load-curve stamps are Paris local times.
//!
//! A small, separate copy of what the agent's `time` module also does, on the same
//! IANA database compiled in by `jiff`: the simulator does not borrow the agent's
//! code, so a mistake in one is caught by the other.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{self, TimeZone};

/// Europe/Paris, compiled in: no dependency on the host's tzdata.
pub static PARIS: TimeZone = tz::get!("Europe/Paris");

/// A date that could not be read or a computation out of jiff's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeError {
    Date { input: String, reason: String },
    OutOfRange(String),
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeError::Date { input, reason } => {
                write!(f, "invalid date {input:?}: expected YYYY-MM-DD ({reason})")
            }
            TimeError::OutOfRange(what) => write!(f, "date out of the supported range: {what}"),
        }
    }
}

impl std::error::Error for TimeError {}

/// Parse a strict `YYYY-MM-DD` calendar date.
pub fn parse_date(input: &str) -> Result<Date, TimeError> {
    let err = |reason: &str| TimeError::Date {
        input: input.chars().take(64).collect(),
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

/// UTC seconds of Paris midnight starting `date` (midnight always exists in Paris).
pub fn day_start(date: Date) -> Result<i64, TimeError> {
    PARIS
        .to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map(Timestamp::as_second)
        .map_err(|e| TimeError::OutOfRange(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2026-10-04"), Ok(date(2026, 10, 4)));
        for bad in [
            "2026-1-04",
            "2026-10-4",
            "20261004",
            "2026-13-01",
            "２026-10-04",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paris_midnight_follows_the_offset() {
        // 2026-03-29 starts in winter time (UTC+1), 2026-07-01 in summer time (UTC+2).
        assert_eq!(day_start(date(2026, 3, 29)), Ok(1_774_738_800));
        assert_eq!(day_start(date(2026, 7, 1)), Ok(1_782_856_800));
    }
}

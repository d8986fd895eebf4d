//! Which Paris days to ask Enedis for, and in how many calls.
//!
//! Enedis serves `[start, end[` by Paris calendar day, only up to yesterday, only so
//! far back (load curves 24 months + 15 days, daily values and indexes 36 months +
//! 15 days, counted from today), and only so many days per call (load curves 7,
//! daily values and indexes 365 here). [`plan`] clamps a window that overlaps those
//! limits, saying so in its notes, refuses one that lies wholly outside with an
//! error naming the limit, and splits the rest into calls.
//!
//! The energy per calendar class ([`Series::is_derived`]) lags one more day: the
//! energy of day D is the difference of the class's counters read at the
//! midnights starting D and D + 1, and Enedis serves the second one only from
//! D + 2 (its index of a day is the one read at that day's first midnight).

use jiff::ToSpan;
use jiff::civil::Date;

use super::error::UpstreamError;
use crate::quoalise::{Series, SeriesKind};

/// The upstream limits for one kind of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest period of one call, in days.
    pub days_per_call: i64,
    /// History depth: months, then days, back from today.
    pub history_months: i64,
    pub history_days: i64,
}

impl Limits {
    pub fn of(series: Series) -> Limits {
        match series.kind() {
            SeriesKind::LoadCurve => Limits {
                days_per_call: 7,
                history_months: 24,
                history_days: 15,
            },
            SeriesKind::DailyEnergy | SeriesKind::DailyMaxPower | SeriesKind::Index => Limits {
                days_per_call: 365,
                history_months: 36,
                history_days: 15,
            },
        }
    }

    /// Enedis SGE's limits for `series`: Data Connect's calls (7 days of curve,
    /// a year of daily data), but a history of exactly 24 months of curve and 36
    /// of daily data, without Data Connect's 15 days of grace (SGE refuses the
    /// day before with SGT4L8).
    pub fn sge(series: Series) -> Limits {
        Limits {
            history_days: 0,
            ..Limits::of(series)
        }
    }

    /// The oldest day Enedis serves when today (Paris) is `today`.
    pub fn oldest(&self, today: Date) -> Date {
        today
            .saturating_sub(self.history_months.months())
            .saturating_sub(self.history_days.days())
    }

    fn describe(&self) -> String {
        if self.history_days == 0 {
            return format!("{} months", self.history_months);
        }
        format!(
            "{} months + {} days",
            self.history_months, self.history_days
        )
    }
}

/// What will be asked upstream for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The days actually served, `[from, to[`, after clamping.
    pub from: Date,
    pub to: Date,
    /// One entry per upstream call, in order, `[from, to[` each.
    pub calls: Vec<(Date, Date)>,
    /// What was clamped and why, for the peer.
    pub notes: Vec<String>,
}

fn series_label(series: Series) -> &'static str {
    match series.kind() {
        SeriesKind::LoadCurve => "load curve",
        SeriesKind::DailyEnergy => "daily energy",
        SeriesKind::DailyMaxPower => "daily maximum power",
        SeriesKind::Index => "index",
    }
}

/// Plan the calls for `series` over the Paris days `[from, to[`, `today` being
/// today's date in Paris. For a derived series, the days to derive (its calls are
/// those of the index it is derived from).
pub fn plan(series: Series, from: Date, to: Date, today: Date) -> Result<Plan, UpstreamError> {
    plan_within(Limits::of(series), series, from, to, today)
}

/// [`plan`] within other `limits` (Enedis SGE's: [`Limits::sge`]).
pub fn plan_within(
    limits: Limits,
    series: Series,
    from: Date,
    to: Date,
    today: Date,
) -> Result<Plan, UpstreamError> {
    if from >= to {
        return Err(UpstreamError::BadWindow(format!(
            "the period is empty: its start {from} is not before its end {to} (the end day is excluded)"
        )));
    }
    let label = series_label(series);
    let oldest = limits.oldest(today);
    let mut notes = Vec::new();
    // The first day that cannot be served yet, and why.
    let (unserved, why) = if series.is_derived() {
        let unserved = today.checked_sub(series.lag_days().days()).unwrap_or(today);
        let last = unserved.yesterday().unwrap_or(unserved);
        (
            unserved,
            format!(
                "the energy per calendar class is known only up to {last} (Paris time): a day's energy needs the counters read at the midnight ending it, which Enedis serves the next day"
            ),
        )
    } else {
        let yesterday = today.yesterday().unwrap_or(today);
        (
            today,
            format!("Enedis has data only up to yesterday ({yesterday}, Paris time)"),
        )
    };

    if from >= unserved {
        return Err(UpstreamError::BadWindow(format!(
            "refused: the period starts on {from}, but {why}"
        )));
    }
    if to <= oldest {
        return Err(UpstreamError::BadWindow(format!(
            "refused: the period ends on {to}, before the {label} history limit of {} (nothing before {oldest})",
            limits.describe()
        )));
    }
    let mut served_to = to;
    if to > unserved {
        served_to = unserved;
        notes.push(format!("end clamped from {to} to {unserved}: {why}"));
    }
    let mut served_from = from;
    if from < oldest {
        served_from = oldest;
        notes.push(format!(
            "start clamped from {from} to {oldest}: the {label} history limit is {}",
            limits.describe()
        ));
    }

    let mut calls = Vec::new();
    let mut start = served_from;
    while start < served_to {
        let end = start
            .checked_add(limits.days_per_call.days())
            .map_or(served_to, |end| end.min(served_to));
        calls.push((start, end));
        start = end;
    }
    Ok(Plan {
        from: served_from,
        to: served_to,
        calls,
        notes,
    })
}

//! What every metering generation shares: reading the period, Enedis' checks in
//! their order, and the synthetic series for a period (before rendering).
//!
//! Check order: parameters and dates (`Invalid_request`), consent (`ADAM-DC-0008`),
//! direction (`ADAM-ERR0069`), commissioning (`ADAM-ERR0123`), history depth
//! (`ADAM-ERR0125`/`ADAM-DC-0016`), 7-day load-curve limit (`ADAM-DC-0015`), load
//! curve activation and empty results (`no_data_found`).

use jiff::ToSpan;
use jiff::civil::Date;

use crate::model::{Direction, Prm};
use crate::paris::{TimeError, next_day, parse_date};

use super::catalogue::{self, Meter};
use super::errors::{Gen, Refusal};
use super::state::{Holder, Sim};
use super::synth;

/// Which series is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    LoadCurve,
    Daily,
    MaxPower,
    Index,
}

impl From<TimeError> for Refusal {
    fn from(e: TimeError) -> Self {
        tracing::warn!(error = %e, "time computation failed");
        Refusal::Technical
    }
}

/// Read `start`/`end` (or `dateDebut`/`dateFin`) and check them against today.
pub fn parse_period(
    generation: Gen,
    start: Option<&str>,
    end: Option<&str>,
    today: Date,
) -> Result<(Date, Date), Refusal> {
    let fr = generation == Gen::Api2026;
    let bad = |m: &str| Err(Refusal::InvalidRequest(m.to_owned()));
    let Some(start) = start else {
        return bad("Start date parameter is required");
    };
    let Ok(start) = parse_date(start) else {
        return bad(if fr {
            "Le paramètre dateDebut doit être au format YYYY-MM-DD"
        } else {
            "Start date parameter must be in the format YYYY-MM-DD"
        });
    };
    let Some(end) = end else {
        return bad("End date parameter is required");
    };
    let Ok(end) = parse_date(end) else {
        return bad(if fr {
            "Le paramètre dateFin doit être au format YYYY-MM-DD"
        } else {
            "End date parameter must be in the format YYYY-MM-DD"
        });
    };
    if end > today {
        return bad(if fr {
            "La date de fin ne peut pas être postérieure à la date du jour"
        } else {
            "The end date parameter must be earlier than the current date"
        });
    }
    if start >= end {
        return bad(if fr {
            "La date de début doit être antérieure à la date de fin"
        } else {
            "Start date should be before end date"
        });
    }
    Ok((start, end))
}

/// Read a v3/v4/v5 `usage_point_id`.
pub fn parse_usage_point(value: Option<&str>) -> Result<Prm, Refusal> {
    let Some(value) = value else {
        return Err(Refusal::InvalidRequest(
            "usage_point_id parameter is required".to_owned(),
        ));
    };
    value.parse().map_err(|_| {
        Refusal::InvalidRequest("usage_point_id parameter must be 14 digits long".to_owned())
    })
}

/// A v3/v4/v5 metering request once Enedis' checks pass: which meter, which days.
pub struct V1Request {
    pub meter: Meter,
    pub start: Date,
    pub end: Date,
}

/// Read a v3/v4/v5 query (`usage_point_id`, `start`, `end`) and run [`check`].
pub fn v1_request(
    sim: &Sim,
    holder: Holder,
    generation: Gen,
    query: Option<&str>,
    measure: Measure,
    direction: Direction,
) -> Result<V1Request, Refusal> {
    let params = parse_query(query);
    let prm = parse_usage_point(param(&params, "usage_point_id"))?;
    let period = parse_period(
        generation,
        param(&params, "start"),
        param(&params, "end"),
        sim.today(),
    )?;
    let meter = check(sim, holder, prm, measure, direction, period)?;
    let (start, end) = period;
    Ok(V1Request { meter, start, end })
}

/// The first value of `key` in a parsed query.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parse a query string (absent = empty).
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Enedis' checks after the parameters, in order; returns the meter on success.
pub fn check(
    sim: &Sim,
    holder: Holder,
    prm: Prm,
    measure: Measure,
    direction: Direction,
    (start, end): (Date, Date),
) -> Result<Meter, Refusal> {
    let today = sim.today();
    if !sim.may_read(holder, prm) {
        return Err(Refusal::NoConsent);
    }
    let meter = catalogue::meter(prm);
    if !meter.kind.has(direction) {
        return Err(Refusal::WrongDirection);
    }
    if start < meter.activation {
        return Err(Refusal::BeforeActivation);
    }
    let depth = match measure {
        Measure::LoadCurve => 24.months().days(15),
        _ => 36.months().days(15),
    };
    let deadline = today.saturating_sub(depth);
    if start < deadline {
        return Err(Refusal::TooOld);
    }
    if measure == Measure::LoadCurve {
        if end > start.saturating_add(7.days()) {
            return Err(Refusal::TooLong);
        }
        if !meter.load_curve {
            return Err(Refusal::NoData);
        }
    }
    Ok(meter)
}

fn days(start: Date, end: Date) -> Result<Vec<Date>, Refusal> {
    let mut out = Vec::new();
    let mut d = start;
    while d < end {
        out.push(d);
        d = next_day(d)?;
    }
    Ok(out)
}

/// One load-curve reading.
#[derive(Debug, Clone)]
pub struct LcPoint {
    /// 1 = the first interval after Paris midnight of the start day; counts real
    /// intervals, missing ones included.
    pub rank: u32,
    /// Paris local end time, `YYYY-MM-DD hh:mm:ss`.
    pub end_local: String,
    /// `None`: missing (kept only when asked).
    pub value: Option<u32>,
}

/// The load curve over `[start, end[`; missing points are dropped unless
/// `keep_missing`. `no_data_found` when nothing is there.
pub fn load_curve(
    meter: &Meter,
    direction: Direction,
    start: Date,
    end: Date,
    keep_missing: bool,
) -> Result<Vec<LcPoint>, Refusal> {
    let mut out = Vec::new();
    let mut rank = 0;
    let mut any = false;
    for day in days(start, end)? {
        for p in synth::day_curve(meter, direction, day)? {
            rank += 1;
            let missing = synth::missing_point(meter, p.start);
            any |= !missing;
            if missing && !keep_missing {
                continue;
            }
            out.push(LcPoint {
                rank,
                end_local: synth::local_string(p.end)?,
                value: (!missing).then_some(p.value),
            });
        }
    }
    if !any {
        return Err(Refusal::NoData);
    }
    Ok(out)
}

/// One daily value.
#[derive(Debug, Clone)]
pub struct DayPoint {
    /// 1 = the start day.
    pub rank: u32,
    pub date: Date,
    /// Wh (energy) or VA (max power); `None`: missing.
    pub value: Option<u64>,
    /// Max power only: Paris local time of the peak.
    pub at_local: Option<String>,
}

/// Daily energy, maximum power or index over `[start, end[`.
pub fn daily(
    sim: &Sim,
    meter: &Meter,
    measure: Measure,
    direction: Direction,
    start: Date,
    end: Date,
    keep_missing: bool,
) -> Result<Vec<DayPoint>, Refusal> {
    let mut out = Vec::new();
    let mut any = false;
    for (i, day) in days(start, end)?.into_iter().enumerate() {
        let missing = synth::missing_day(meter, day);
        any |= !missing;
        if missing && !keep_missing {
            continue;
        }
        let (value, at_local) = if missing {
            (None, None)
        } else {
            match measure {
                Measure::MaxPower => {
                    let peak = synth::daily_peak(meter, day)?;
                    (
                        Some(u64::from(peak.value)),
                        Some(synth::local_string(peak.at)?),
                    )
                }
                Measure::Index => (Some(sim.index().index_at(meter, direction, day)?), None),
                _ => (Some(synth::daily_energy(meter, direction, day)?), None),
            }
        };
        out.push(DayPoint {
            rank: i as u32 + 1,
            date: day,
            value,
            at_local,
        });
    }
    if !any {
        return Err(Refusal::NoData);
    }
    Ok(out)
}

/// Monthly maximum power (2026 `mesuresPas=P1M`): the highest daily peak of each
/// calendar month inside `[start, end[`, dated at the peak.
pub fn monthly_peaks(points: &[DayPoint]) -> Vec<DayPoint> {
    let mut out: Vec<DayPoint> = Vec::new();
    for p in points.iter().filter(|p| p.value.is_some()) {
        let month = p.date.first_of_month();
        match out.last_mut() {
            Some(last) if last.date.first_of_month() == month => {
                if p.value > last.value {
                    *last = p.clone();
                }
            }
            _ => out.push(p.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn period_rules() {
        let today = date(2026, 10, 4);
        assert!(parse_period(Gen::V5, Some("2026-10-03"), Some("2026-10-04"), today).is_ok());
        let err = |s, e| parse_period(Gen::V5, s, e, today).unwrap_err();
        assert_eq!(
            err(Some("2026-10-03"), Some("2026-10-05")),
            Refusal::InvalidRequest(
                "The end date parameter must be earlier than the current date".into()
            )
        );
        assert_eq!(
            err(Some("2026-10-03"), Some("2026-10-03")),
            Refusal::InvalidRequest("Start date should be before end date".into())
        );
        assert!(matches!(
            err(Some("2026-1-03"), Some("2026-10-03")),
            Refusal::InvalidRequest(_)
        ));
        assert!(matches!(
            err(None, Some("2026-10-03")),
            Refusal::InvalidRequest(_)
        ));
    }
}

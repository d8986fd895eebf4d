//! The energy per calendar class and per Paris day, derived from the class's
//! counters (indexes): what a peer would otherwise compute from two readings.
//!
//! Enedis reads a Linky's counters at every Paris midnight and dates each reading
//! with that midnight (`d` = `YYYY-MM-DD 00:00:00`, the first instant of the day).
//! The energy of class C on Paris day D is therefore
//!
//! ```text
//! index_C(midnight starting D + 1) − index_C(midnight starting D)
//! ```
//!
//! stamped at the midnight starting D (UTC), step `P1D`: 23 hours on the spring
//! day, 25 on the autumn one, like every daily value. Nothing is invented:
//!
//! - a counter missing at either midnight (a gap in Enedis' answer, a day the
//!   meter did not report) leaves the day without a value;
//! - a class that appears or disappears (the calendar changed: a new offer, a new
//!   distribution tariff) has values only for the days with both counters;
//! - a counter read at another instant than a Paris midnight (meters other than a
//!   Linky) is not used: the energy between two such readings is not a Paris
//!   day's;
//! - a counter that goes down (a meter replaced, a register reset) leaves the day
//!   without a value.
//!
//! The day D needs the reading of D + 1's midnight, which Enedis serves from
//! D + 2 on ([`super::window`]): the days `[from, to[` are derived from the
//! indexes of `[from, to + 1[`.

use jiff::civil::Date;

use crate::quoalise::{Reading, Series, Step};
use crate::time::{TimeError, add_days, day_start};

/// The index series a derived series is computed from.
pub fn index_of(series: Series) -> Option<Series> {
    match series {
        Series::ClassEnergyDaily(direction, class) => Some(Series::ClassIndex(direction, class)),
        _ => None,
    }
}

/// The index days `[from, to + 1[` that the days `[from, to[` are derived from.
pub fn index_days(from: Date, to: Date) -> Result<(Date, Date), TimeError> {
    Ok((from, add_days(to, 1)?))
}

/// One reading per Paris day of `[from, to[` (a `None` value where it cannot be
/// derived), from `index`: a class's counters, ordered by instant.
pub fn daily_energy(index: &[Reading], from: Date, to: Date) -> Result<Vec<Reading>, TimeError> {
    let at = |instant: i64| -> Option<f64> {
        index
            .binary_search_by_key(&instant, |r| r.start)
            .ok()
            .and_then(|i| index[i].value)
    };
    let mut readings = Vec::new();
    let mut day = from;
    let mut start = day_start(day)?;
    while day < to {
        let next = add_days(day, 1)?;
        let end = day_start(next)?;
        let value = match (at(start), at(end)) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            (Some(a), Some(b)) => {
                tracing::debug!(%day, from = a, to = b, "a counter went down: no energy for the day");
                None
            }
            _ => None,
        };
        readings.push(Reading {
            start,
            step: Step::Day,
            value,
        });
        day = next;
        start = end;
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn counter(day: Date, value: Option<f64>) -> Reading {
        Reading {
            start: day_start(day).unwrap(),
            step: Step::Day,
            value,
        }
    }

    #[test]
    fn differences_of_midnight_counters_across_both_dst_days() {
        // 2026-03-29 lasts 23 hours in Paris, 2026-10-25 25 hours.
        for (day, hours) in [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)] {
            let before = day.yesterday().unwrap();
            let after = day.tomorrow().unwrap();
            let index = vec![
                counter(before, Some(1000.0)),
                counter(day, Some(1500.0)),
                counter(after, Some(2300.0)),
                counter(after.tomorrow().unwrap(), Some(2300.0)),
            ];
            let energy = daily_energy(&index, before, after.tomorrow().unwrap()).unwrap();
            let values: Vec<Option<f64>> = energy.iter().map(|r| r.value).collect();
            assert_eq!(values, [Some(500.0), Some(800.0), Some(0.0)], "{day}");
            assert_eq!(energy[1].start, day_start(day).unwrap());
            assert_eq!(energy[2].start - energy[1].start, hours * 3600, "{day}");
            assert!(energy.iter().all(|r| r.step == Step::Day));
        }
        // Stamped at the Paris midnight, in UTC: 23:00Z before spring, 22:00Z after.
        let energy = daily_energy(
            &[
                counter(date(2026, 3, 29), Some(1.0)),
                counter(date(2026, 3, 30), Some(2.0)),
            ],
            date(2026, 3, 29),
            date(2026, 3, 30),
        )
        .unwrap();
        assert_eq!(
            jiff::Timestamp::from_second(energy[0].start)
                .unwrap()
                .to_string(),
            "2026-03-28T23:00:00Z"
        );
    }

    #[test]
    fn gaps_and_calendar_changes_give_missing_values_never_invented_ones() {
        let d = |n: i8| date(2026, 11, n);
        let index = vec![
            counter(d(2), Some(10.0)),
            // 3 November: no reading at all; 4 November: a reading without value.
            counter(d(4), None),
            counter(d(5), Some(40.0)),
            counter(d(6), Some(45.0)),
            // The class stops (calendar changed) after 6 November.
        ];
        let energy = daily_energy(&index, d(1), d(8)).unwrap();
        let values: Vec<Option<f64>> = energy.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [None, None, None, None, Some(5.0), None, None],
            "1 Nov: no counter at its start; 2-4: a counter missing at one end; 5: both; 6-7: the class is gone"
        );
        assert_eq!(energy.len(), 7, "one reading per day, missing or not");
    }

    #[test]
    fn counters_not_read_at_midnight_or_going_down_give_nothing() {
        let day = date(2026, 11, 2);
        let off = Reading {
            start: day_start(day).unwrap() + 2 * 3600 + 11,
            step: Step::Day,
            value: Some(5.0),
        };
        let next = counter(day.tomorrow().unwrap(), Some(9.0));
        let energy = daily_energy(&[off, next], day, day.tomorrow().unwrap()).unwrap();
        assert_eq!(energy[0].value, None);
        let down = daily_energy(
            &[counter(day, Some(900.0)), next],
            day,
            day.tomorrow().unwrap(),
        )
        .unwrap();
        assert_eq!(down[0].value, None, "a meter replaced: no negative energy");
    }
}

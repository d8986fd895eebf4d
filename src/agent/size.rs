//! How large a data answer is, and the refusal when it cannot go in one
//! stanza: predicted before Enedis is called ([`may_be_too_large`],
//! [`too_large_before`], from the range and the meter's step) and measured once
//! the readings are in ([`too_large_after`]). Both refusals name the longest
//! range that fits and the form field that asks for pages ([`PAGING_FIELD`]).

use super::request::{DataRequest, OneStanza};
use crate::quoalise::{Reading, SeriesView, Step, TimeSeries, encode, encode_fitting};
use crate::xmpp::{CommandError, TooLarge};

/// The form field by which a peer asks for pages.
pub const PAGING_FIELD: &str = "paging";

/// The refusal of an answer measured too large: the records, the bytes, the
/// longest range whose answer fits (from the readings themselves).
pub fn too_large_after(
    data: &DataRequest,
    readings: &[Reading],
    records: u64,
    bytes: usize,
    limit: usize,
    room: usize,
) -> CommandError {
    let step = SeriesView::new(data.identifier, readings).sampling();
    let max_days = encode_fitting(&data.identifier, readings, data.meta, room)
        .and_then(|(taken, _)| {
            let first = readings.first()?.start;
            let stop = readings.get(taken)?.start;
            Some(whole_days(first, stop))
        })
        .unwrap_or(0);
    refusal(
        data,
        step,
        records,
        max_days,
        limit,
        format!("the answer holds {records} records ({bytes} bytes with its envelope)"),
    )
}

/// The Paris calendar days, from the one holding `first`, that end by `stop`:
/// counted as days (23, 24 or 25 hours), not as 86,400 seconds, so that the
/// advised number of days fits also across a DST change.
fn whole_days(first: i64, stop: i64) -> u64 {
    let Ok(day) = crate::time::paris_date(first) else {
        return 0;
    };
    let mut days = 0u64;
    while let Ok(end) = crate::time::add_days(day, days as i64 + 1).and_then(crate::time::day_start)
    {
        if end > stop {
            break;
        }
        days += 1;
    }
    days
}

/// The refusal of a range whose answer is predictably too large for `room`
/// payload bytes at `step`, or `None` when it may fit.
///
/// The prediction counts every reading present, every value a single digit.
/// Real values have three to five digits, but meters miss readings (a sixth
/// of them for the simulator's meter with gaps), so a range is refused here
/// only when its answer would be too large even with a third of its readings
/// missing: nearer the limit, the readings are read and measured, and a range
/// the agent advised (after measuring) is never refused here.
pub fn too_large_before(data: &DataRequest, step: Step, one: OneStanza) -> Option<CommandError> {
    let room = one.room;
    let records = predictably_over(data, step, room)?;
    let seconds = step.nominal_seconds();
    // The advised range holds values of up to five digits (36 kVA is the
    // largest C5 meter): a range of that many days fits.
    let per_day = (86_400 / seconds).max(1) as u64;
    let mut days = 0u64;
    while payload_bound(data, step, (days + 1) * per_day, 5) <= room && days < 36_600 {
        days += 1;
    }
    Some(refusal(
        data,
        step,
        records,
        days,
        one.limit,
        format!("the answer would hold about {records} records"),
    ))
}

/// The records of `data`'s answer at `step` when it is too large for `room`
/// by the margin [`too_large_before`] explains; `None` when it may fit.
fn predictably_over(data: &DataRequest, step: Step, room: usize) -> Option<u64> {
    let span = data.window.end - data.window.start;
    let records = u64::try_from(span / step.nominal_seconds()).ok()?;
    (payload_bound(data, step, records, 1) / 3 * 2 > room).then_some(records)
}

/// The finest step a load curve is recorded at (Enedis: 5 minutes, C1–C4).
const FINEST_STEP: Step = Step::Minutes(5);

/// Whether `data`'s answer could be predictably too large for `one` whatever
/// the meter's step: when not, there is no step to look up (most requests).
pub fn may_be_too_large(data: &DataRequest, one: OneStanza) -> bool {
    let step = data.identifier.series.fixed_step().unwrap_or(FINEST_STEP);
    predictably_over(data, step, one.room).is_some()
}

/// Bytes of the payload of `records` readings at `step` whose values have
/// `digits` digits (the first record and the envelope encoded, the others
/// counted).
fn payload_bound(data: &DataRequest, step: Step, records: u64, digits: u32) -> usize {
    if records == 0 {
        return 0;
    }
    let value = f64::from(10u32.pow(digits.saturating_sub(1)));
    let first = Reading {
        start: data.window.start,
        step,
        value: Some(value),
    };
    let head = encode(&TimeSeries::new(data.identifier, vec![first]), data.meta).len();
    let seconds = step.nominal_seconds();
    const TAGS: usize = r#"<senml t="" v=""/>"#.len();
    let mut total = head;
    // Records grouped by the number of digits of their `t`.
    let mut t_digits = 1usize;
    let mut next_power: u64 = 10;
    let mut k: u64 = 1;
    while k < records {
        let t = k.saturating_mul(seconds as u64);
        while t >= next_power {
            t_digits += 1;
            next_power = next_power.saturating_mul(10);
        }
        // Records from k with t below next_power all have t_digits digits.
        let last_same = (next_power.saturating_sub(1) / seconds as u64).min(records - 1);
        let count = last_same - k + 1;
        total = total
            .saturating_add((count as usize).saturating_mul(TAGS + t_digits + digits as usize));
        k = last_same + 1;
    }
    total
}

fn refusal(
    data: &DataRequest,
    step: Step,
    records: u64,
    max_days: u64,
    limit: usize,
    what: String,
) -> CommandError {
    let series = data.identifier.series.describe(step);
    let advice = if max_days == 0 {
        format!("less than a day of {series} fits")
    } else {
        format!("ask for at most {max_days} days of {series} per request")
    };
    CommandError::TooLarge(Box::new(TooLarge {
        text: format!(
            "{what}, more than fits in the {limit} bytes the agent's XMPP server accepts in one stanza: {advice}, or ask for the answer in pages (form field '{PAGING_FIELD}' = true)"
        ),
        records,
        max_bytes: limit as u64,
        step: Some(step.to_string()),
        max_days: Some(max_days),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::{Identifier, MetaForm, Series};
    use crate::time::{Window, day_start};
    use jiff::civil::date;

    fn request(series: Series, days: i64) -> DataRequest {
        let end = day_start(date(2026, 12, 1)).unwrap();
        DataRequest {
            requester: "app@example.org".parse().unwrap(),
            identifier: Identifier::new("22516914714270".parse().unwrap(), series),
            window: Window {
                start: end - days * 86_400,
                end,
            },
            meta: MetaForm::Flat,
            period_fields: "start_time/end_time",
            deadline: tokio::time::Instant::now(),
            class: crate::upstream::Class::Interactive,
            max_payload: None,
        }
    }

    #[test]
    fn the_step_is_looked_up_only_for_ranges_that_may_be_too_large() {
        let one = OneStanza {
            room: 261_000,
            limit: 262_144,
        };
        // A week fits even at 5-minute steps: no step to look up.
        assert!(!may_be_too_large(
            &request(Series::ConsumptionPower, 7),
            one
        ));
        // A year may not (a 30-minute meter's is refused before Enedis).
        let year = request(Series::ConsumptionPower, 365);
        assert!(may_be_too_large(&year, one));
        assert!(too_large_before(&year, Step::PT30M, one).is_some());
        // Three years of daily energy always fit.
        assert!(!may_be_too_large(
            &request(Series::ConsumptionEnergyDaily, 1096),
            one
        ));
        // Whatever a meter's step, a range that may not be too large at the
        // finest one is not refused before Enedis.
        for days in [1, 7, 30, 60] {
            let data = request(Series::ConsumptionPower, days);
            if !may_be_too_large(&data, one) {
                for minutes in [5, 10, 15, 30, 60] {
                    assert!(too_large_before(&data, Step::Minutes(minutes), one).is_none());
                }
            }
        }
    }

    #[test]
    fn whole_days_are_paris_days_across_dst_changes() {
        let at = |y, m, d| day_start(date(y, m, d)).unwrap();
        // 2026-10-25 lasts 25 hours: 8 days from 10-19 end at 10-27 00:00,
        // 8 × 86,400 s + 3,600 s after the start.
        let first = at(2026, 10, 19);
        assert_eq!(whole_days(first, first + 8 * 86_400), 7);
        assert_eq!(whole_days(first, at(2026, 10, 27)), 8);
        // 2026-03-29 lasts 23 hours.
        let first = at(2026, 3, 28);
        assert_eq!(whole_days(first, first + 2 * 86_400 - 3_600), 2);
        assert_eq!(whole_days(first, first + 2 * 86_400 - 3_601), 1);
        // A first reading in the middle of its day counts from that day.
        assert_eq!(whole_days(at(2026, 6, 1) + 1_800, at(2026, 6, 3)), 2);
        assert_eq!(whole_days(at(2026, 6, 1), at(2026, 6, 1) + 1_800), 0);
    }
}

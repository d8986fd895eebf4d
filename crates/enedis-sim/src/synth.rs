//! Deterministic synthetic measurements, computed from (PRM, instant) only.
//!
//! A household load has a base, a morning and an evening peak (a later morning on
//! weekends), a midday bump, an off-peak water heater at night for half of the PRMs,
//! and is higher in winter. A solar plant produces only while the sun is up, following
//! its elevation (day of year and hour, for a site in central France) and a cloud
//! factor drawn per day. Noise comes from a hash, so the same question always gets
//! the same answer, whatever else was asked before.
//!
//! Daily energy is exactly the integral of that day's load curve at the meter's own
//! step, and the daily maximum power is a peak at least as high as the curve's
//! highest point, inside that point's interval.

use std::f64::consts::PI;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};

use crate::model::{Direction, Prm};
use crate::paris::{PARIS, TimeError, day_start, next_day};

use super::catalogue::{Kind, Meter};

/// splitmix64's finaliser: a cheap, stable, well-mixed hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a seed, a tag and a value.
pub fn unit(seed: u64, tag: u64, value: i64) -> f64 {
    let h = mix(seed ^ mix(tag ^ mix(value as u64)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The per-PRM seed.
pub fn seed(prm: Prm) -> u64 {
    mix(prm.as_str().parse::<u64>().unwrap_or(0))
}

const TAG_NOISE_LOAD: u64 = 1;
const TAG_NOISE_SUN: u64 = 2;
const TAG_CLOUD: u64 = 3;
const TAG_PEAK_VALUE: u64 = 4;
const TAG_PEAK_TIME: u64 = 5;

/// Household draw in W at instant `t` (UTC seconds).
fn household_load(seed: u64, t: i64) -> f64 {
    let Ok(ts) = Timestamp::from_second(t) else {
        return 0.0;
    };
    let local = PARIS.to_datetime(ts);
    let hour = f64::from(local.hour()) + f64::from(local.minute()) / 60.0;
    let day_of_year = f64::from(local.date().day_of_year());
    let weekend = matches!(local.date().weekday(), Weekday::Saturday | Weekday::Sunday);

    let base = 250.0 + (seed % 300) as f64;
    let morning_at = if weekend { 9.5 } else { 7.5 };
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    let shape =
        base + 1200.0 * bump(morning_at, 1.0) + 500.0 * bump(12.5, 1.0) + 1800.0 * bump(19.5, 1.5);
    // Winter higher: +55 % mid-January, -55 % mid-July.
    let season = 1.0 + 0.55 * (2.0 * PI * (day_of_year - 15.0) / 365.25).cos();
    let noise = 0.85 + 0.3 * unit(seed, TAG_NOISE_LOAD, t);
    // Off-peak water heater, 22:30 to 01:00 local, for half of the PRMs.
    let heater = if seed & 1 == 0 && !(1.0..22.5).contains(&hour) {
        1800.0 + (seed >> 8) as f64 % 1000.0
    } else {
        0.0
    };
    shape * season * noise + heater
}

/// Solar production in W at instant `t` (UTC seconds).
fn solar(seed: u64, t: i64) -> f64 {
    let Ok(ts) = Timestamp::from_second(t) else {
        return 0.0;
    };
    let day = PARIS.to_datetime(ts).date();
    let day_of_year = f64::from(day.day_of_year());
    let latitude = 45.8_f64.to_radians();
    let longitude = 2.3_f64;
    let declination = (23.44_f64 * (2.0 * PI * (284.0 + day_of_year) / 365.0).sin()).to_radians();
    let utc_hours = t.rem_euclid(86_400) as f64 / 3600.0;
    let solar_time = utc_hours + longitude / 15.0;
    let hour_angle = (15.0 * (solar_time - 12.0)).to_radians();
    let sin_elevation =
        latitude.sin() * declination.sin() + latitude.cos() * declination.cos() * hour_angle.cos();
    if sin_elevation <= 0.0 {
        return 0.0;
    }
    let capacity = 3000.0 + (seed % 3000) as f64;
    let day_number = day_start(day).unwrap_or(0) / 86_400;
    let cloud = 0.25 + 0.75 * unit(seed, TAG_CLOUD, day_number);
    let noise = 0.9 + 0.2 * unit(seed, TAG_NOISE_SUN, t);
    capacity * sin_elevation.powf(1.15) * cloud * noise
}

fn even(watts: f64) -> u32 {
    if watts <= 0.0 {
        0
    } else {
        ((watts / 2.0).round() as u32) * 2
    }
}

/// Mean power in W over `[start, start + step_seconds[` in the given direction.
pub fn power(meter: &Meter, direction: Direction, start: i64, step_seconds: i64) -> u32 {
    let s = seed(meter.prm);
    let t = start + step_seconds / 2;
    let value = match (meter.kind, direction) {
        (Kind::Consumption, Direction::Consumption) => household_load(s, t),
        (Kind::Production, Direction::Production) => solar(s, t),
        (Kind::SelfConsumption, Direction::Consumption) => household_load(s, t) - solar(s, t),
        (Kind::SelfConsumption, Direction::Production) => solar(s, t) - household_load(s, t),
        _ => 0.0,
    };
    even(value)
}

/// One load-curve interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurvePoint {
    /// UTC second the interval starts.
    pub start: i64,
    /// UTC second the interval ends (Enedis stamps this one).
    pub end: i64,
    /// Mean power, W.
    pub value: u32,
}

/// Every interval of one Paris day at the meter's step (46/50 half-hours on DST
/// days), gaps included.
pub fn day_curve(
    meter: &Meter,
    direction: Direction,
    day: Date,
) -> Result<Vec<CurvePoint>, TimeError> {
    let step = i64::from(meter.step_minutes) * 60;
    let from = day_start(day)?;
    let to = day_start(next_day(day)?)?;
    Ok((0..)
        .map(|i| from + i * step)
        .take_while(|start| *start < to)
        .map(|start| CurvePoint {
            start,
            end: start + step,
            value: power(meter, direction, start, step),
        })
        .collect())
}

/// Energy of one Paris day in Wh: the integral of that day's load curve.
pub fn daily_energy(meter: &Meter, direction: Direction, day: Date) -> Result<u64, TimeError> {
    let minutes = u64::from(meter.step_minutes);
    let sum: u64 = day_curve(meter, direction, day)?
        .iter()
        .map(|p| u64::from(p.value) * minutes)
        .sum();
    Ok((sum + 30) / 60)
}

/// A daily maximum power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peak {
    /// Apparent power, VA, at least the highest mean power of the day's curve.
    pub value: u32,
    /// UTC second of the peak, inside the interval of the curve's highest point.
    pub at: i64,
}

/// The maximum drawn power of one Paris day.
pub fn daily_peak(meter: &Meter, day: Date) -> Result<Peak, TimeError> {
    let curve = day_curve(meter, Direction::Consumption, day)?;
    let s = seed(meter.prm);
    let Some(top) = curve
        .iter()
        .max_by_key(|p| (p.value, std::cmp::Reverse(p.start)))
    else {
        return Ok(Peak {
            value: 0,
            at: day_start(day)?,
        });
    };
    let factor = 1.08 + 0.25 * unit(s, TAG_PEAK_VALUE, top.start);
    let value = (f64::from(top.value) * factor).round() as u32;
    let offset = (unit(s, TAG_PEAK_TIME, top.start) * (top.end - top.start) as f64) as i64;
    Ok(Peak {
        value: value.max(top.value),
        at: top.start + offset.clamp(0, top.end - top.start - 1),
    })
}

/// Whether a gap meter has no data at all that day (Tuesdays).
pub fn missing_day(meter: &Meter, day: Date) -> bool {
    meter.gaps && day.weekday() == Weekday::Tuesday
}

/// Whether a gap meter lacks the load-curve reading of the interval starting at
/// `start` (all of Tuesday; Wednesday intervals starting 12:00 to 17:59 local).
pub fn missing_point(meter: &Meter, start: i64) -> bool {
    if !meter.gaps {
        return false;
    }
    let Ok(ts) = Timestamp::from_second(start) else {
        return false;
    };
    let local = PARIS.to_datetime(ts);
    match local.date().weekday() {
        Weekday::Tuesday => true,
        Weekday::Wednesday => (12..18).contains(&local.hour()),
        _ => false,
    }
}

/// `YYYY-MM-DD hh:mm:ss` in Paris local time, as Enedis writes instants.
pub fn local_string(seconds: i64) -> Result<String, TimeError> {
    let ts = Timestamp::from_second(seconds).map_err(|e| TimeError::OutOfRange(e.to_string()))?;
    let d = PARIS.to_datetime(ts);
    Ok(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    ))
}

/// The UTC offset of the Paris midnight starting `day`, `+02{separator}00`.
pub fn midnight_offset(day: Date, separator: &str) -> Result<String, TimeError> {
    let seconds = day_start(day)?;
    let ts = Timestamp::from_second(seconds).map_err(|e| TimeError::OutOfRange(e.to_string()))?;
    let offset = PARIS.to_offset(ts).seconds();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.abs();
    Ok(format!(
        "{sign}{:02}{separator}{:02}",
        offset / 3600,
        (offset % 3600) / 60
    ))
}

/// `YYYY-MM-DDT00:00:00+0200`: a Paris midnight with its offset, as the ITC APIs
/// write dates.
pub fn itc_date(day: Date) -> Result<String, TimeError> {
    Ok(format!("{day}T00:00:00{}", midnight_offset(day, "")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::meter;
    use jiff::civil::date;

    fn m(s: &str) -> Meter {
        meter(s.parse().unwrap())
    }

    #[test]
    fn deterministic_and_shaped() {
        let house = m("22516914714270");
        let day = date(2026, 1, 14);
        let a = day_curve(&house, Direction::Consumption, day).unwrap();
        let b = day_curve(&house, Direction::Consumption, day).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 48);
        // The evening is busier than the small hours.
        let at = |h: usize| a[h * 2].value;
        assert!(at(19) > at(4), "{} vs {}", at(19), at(4));
        // Winter above summer.
        let summer = daily_energy(&house, Direction::Consumption, date(2026, 7, 15)).unwrap();
        let winter = daily_energy(&house, Direction::Consumption, day).unwrap();
        assert!(winter > summer, "{winter} vs {summer}");
    }

    #[test]
    fn production_only_in_daylight() {
        let plant = m("24880057139941");
        let curve = day_curve(&plant, Direction::Production, date(2026, 6, 21)).unwrap();
        for p in &curve {
            let local = local_string(p.start).unwrap();
            let hour: u32 = local[11..13].parse().unwrap();
            if !(5..23).contains(&hour) {
                assert_eq!(p.value, 0, "{local}");
            }
        }
        assert!(curve.iter().any(|p| p.value > 1000));
    }

    #[test]
    fn daily_is_integral_and_peak_above_curve() {
        let house = m("30000000000010");
        let day = date(2026, 2, 3);
        let curve = day_curve(&house, Direction::Consumption, day).unwrap();
        assert_eq!(curve.len(), 144);
        let sum: u64 = curve.iter().map(|p| u64::from(p.value) * 10).sum();
        assert_eq!(
            daily_energy(&house, Direction::Consumption, day).unwrap(),
            (sum + 30) / 60
        );
        let peak = daily_peak(&house, day).unwrap();
        let max = curve.iter().map(|p| p.value).max().unwrap();
        assert!(peak.value >= max);
        assert!(peak.at >= curve[0].start && peak.at < curve[143].end);
    }

    #[test]
    fn itc_dates_carry_the_paris_offset() {
        assert_eq!(
            itc_date(date(2024, 7, 31)).unwrap(),
            "2024-07-31T00:00:00+0200"
        );
        assert_eq!(
            itc_date(date(2014, 1, 22)).unwrap(),
            "2014-01-22T00:00:00+0100"
        );
    }
}

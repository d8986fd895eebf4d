//! Calendars and classes (classes temporelles): which counter of a Linky each
//! interval's energy goes to, and the counters themselves ([`IndexCache`]), which
//! the index answers report.
//!
//! A Linky counts active energy in registers ("cadrans"): four for the
//! distributor's calendar (`IDX_EAS_D1`…`D4`), ten for the supplier's
//! (`IDX_EAS_F1`…`F10`), and the totalisator (`IDX_EAS_T`), as the SGE index
//! capture (`ConsultationMesuresDetailleesV3.0/C5-INDEX`) and the SGE history
//! export name them. A calendar maps each of its classes to one register; the
//! registers keep counting when the calendar changes (a new offer maps its classes
//! to the same registers), so every register is the running sum of the energy its
//! classes received since commissioning, and the classes of the calendar in force
//! always add up to the totalisator.
//!
//! The calendars:
//!
//! | calendar | classes (register) | source |
//! |---|---|---|
//! | `DI000001` Sans différenciation temporelle | `BASE` (D1) | SGE capture and R151 |
//! | `DI000003` Avec différenciation temporelle | `HPH` (D1), `HCH` (D2), `HPB` (D3), `HCB` (D4) | id, label and `HCB` label seen in an R151 of another project; the register order is ours |
//! | `FC000165` Base | `BASE` (F1) | R151 capture |
//! | `FC020831` Heures Pleines/Creuses | `HC` (F1), `HP` (F2) | id and label seen in an R151 of another project; classes and registers ours |
//! | `FC000050` 6 cadrans (Tempo) | `BUHC` (F1), `BUHP` (F2), `BCHC` (F3), `BCHP` (F4), `RHC` (F5), `RHP` (F6) | SGE capture, labels and registers included |
//!
//! High season (`…H`) is November to March, low season (`…B`) April to October.
//! Off-peak hours (`HC`) are the meter's, `22:00–06:00` unless a meter says
//! otherwise; Tempo's off-peak hours are `22:00–06:00`, and a Tempo day runs from
//! 06:00 to 06:00 the next day, its colour drawn per day ([`tempo_colour`]).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday, date};

use crate::model::{Direction, Prm};
use crate::paris::{PARIS, TimeError, next_day};

use super::catalogue::Meter;
pub use super::catalogue::{CALENDAR_CHANGE_PRM, OFF_PEAK_CHANGE_PRM, TEMPO_PRM};
use super::synth::{self, unit};

/// Registers of a Linky: D1–D4 then F1–F10.
pub const REGISTERS: usize = 14;

/// One class of a calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// `idClasseTemporelle`.
    pub id: &'static str,
    /// `libelleClasseTemporelle`.
    pub label: &'static str,
    /// `codeCadran`.
    pub cadran: &'static str,
    /// Which register counts it (0–3: D1–D4, 4–13: F1–F10).
    pub register: usize,
}

/// One calendar (`calendrier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// `idCalendrier`: `DI…` the distributor's, `FC…` the supplier's.
    pub id: &'static str,
    /// `libelleCalendrier`.
    pub label: &'static str,
    pub classes: &'static [Class],
}

const fn class(
    id: &'static str,
    label: &'static str,
    cadran: &'static str,
    register: usize,
) -> Class {
    Class {
        id,
        label,
        cadran,
        register,
    }
}

/// The distributor's calendar without time classes.
pub const DI_BASE: Calendar = Calendar {
    id: "DI000001",
    label: "Sans différenciation temporelle",
    classes: &[class("BASE", "Base", "IDX_EAS_D1", 0)],
};

/// The distributor's four-class calendar (peak / off-peak, high / low season).
pub const DI_FOUR: Calendar = Calendar {
    id: "DI000003",
    label: "Avec différenciation temporelle",
    classes: &[
        class("HPH", "Heures Pleines Saison Haute", "IDX_EAS_D1", 0),
        class("HCH", "Heures Creuses Saison Haute", "IDX_EAS_D2", 1),
        class("HPB", "Heures Pleines Saison Basse", "IDX_EAS_D3", 2),
        class("HCB", "Heures Creuses Saison Basse", "IDX_EAS_D4", 3),
    ],
};

/// A supplier's base offer.
pub const FC_BASE: Calendar = Calendar {
    id: "FC000165",
    label: "Base",
    classes: &[class("BASE", "Base", "IDX_EAS_F1", 4)],
};

/// A supplier's peak / off-peak offer.
pub const FC_HPHC: Calendar = Calendar {
    id: "FC020831",
    label: "Heures Pleines/Creuses",
    classes: &[
        class("HC", "Heures Creuses", "IDX_EAS_F1", 4),
        class("HP", "Heures Pleines", "IDX_EAS_F2", 5),
    ],
};

/// Tempo, in the order of the SGE capture.
pub const FC_TEMPO: Calendar = Calendar {
    id: "FC000050",
    label: "6 cadrans",
    classes: &[
        class("BUHP", "Bleu Heures Pleines", "IDX_EAS_F2", 5),
        class("BCHP", "Blanc Heures Pleines", "IDX_EAS_F4", 7),
        class("RHC", "Rouge Heures Creuses", "IDX_EAS_F5", 8),
        class("BCHC", "Blanc Heures Creuses", "IDX_EAS_F3", 6),
        class("BUHC", "Bleu Heures Creuses", "IDX_EAS_F1", 4),
        class("RHP", "Rouge Heures Pleines", "IDX_EAS_F6", 9),
    ],
};

/// The totalisator's `codeCadran`.
pub const TOTALISATOR: &str = "IDX_EAS_T";

/// Off-peak hours: `[from, to[` local hours, wrapping past midnight when `from > to`.
pub type OffPeak = &'static [(u8, u8)];

/// The usual off-peak hours, `HC (22H00-6H00)`.
pub const NIGHT: OffPeak = &[(22, 6)];
/// Off-peak hours moved partly to the afternoon (as the 2025–2027 reform does):
/// `HC (2H00-7H00;13H00-16H00)`.
pub const NIGHT_AND_AFTERNOON: OffPeak = &[(2, 7), (13, 16)];

/// A supplier's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Base,
    PeakOffPeak(OffPeak),
    Tempo,
}

/// What counts a meter's energy one day: its distributor's and supplier's
/// calendars, and the off-peak hours of the distributor's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    pub distributor: &'static Calendar,
    /// `None`: no supplier calendar (an injection point).
    pub supplier: Option<&'static Calendar>,
    pub offer: Offer,
    /// Off-peak hours of the distributor's four-class calendar.
    pub off_peak: OffPeak,
}

/// The first day of [`NIGHT_AND_AFTERNOON`] for [`OFF_PEAK_CHANGE_PRM`]
/// ([`NIGHT`] before).
pub const OFF_PEAK_CHANGE: Date = date(2026, 11, 16);
/// The first day of [`CALENDAR_CHANGE_PRM`]'s new calendars.
pub const CALENDAR_CHANGE: Date = date(2026, 11, 9);

const BASE: Tariff = Tariff {
    distributor: &DI_BASE,
    supplier: Some(&FC_BASE),
    offer: Offer::Base,
    off_peak: NIGHT,
};

const fn peak_off_peak(off_peak: OffPeak) -> Tariff {
    Tariff {
        distributor: &DI_FOUR,
        supplier: Some(&FC_HPHC),
        offer: Offer::PeakOffPeak(off_peak),
        off_peak,
    }
}

/// SGE's C5 example meter (`sge::meters::C5_PRM`, defined here): it counts
/// under Tempo, as the real C5-INDEX example answer does.
pub const SGE_C5_PRM: &str = "09111642617347";

/// The calendars counting `meter`'s energy in `direction` on Paris day `day`.
///
/// Consumption: peak / off-peak `22:00–06:00` (what the simulated contracts
/// say), except the special meters above. Production: the distributor's base
/// calendar only (an injection point has no supplier calendar).
pub fn tariff(meter: &Meter, direction: Direction, day: Date) -> Tariff {
    if direction == Direction::Production {
        return Tariff {
            distributor: &DI_BASE,
            supplier: None,
            offer: Offer::Base,
            off_peak: NIGHT,
        };
    }
    match meter.prm.as_str() {
        TEMPO_PRM | SGE_C5_PRM => Tariff {
            distributor: &DI_BASE,
            supplier: Some(&FC_TEMPO),
            offer: Offer::Tempo,
            off_peak: NIGHT,
        },
        OFF_PEAK_CHANGE_PRM if day >= OFF_PEAK_CHANGE => peak_off_peak(NIGHT_AND_AFTERNOON),
        CALENDAR_CHANGE_PRM if day < CALENDAR_CHANGE => BASE,
        _ => peak_off_peak(NIGHT),
    }
}

/// The calendars whose counters Enedis reports at the midnight starting `day`: those
/// in force that day, and, on the first day of new calendars, the previous ones too
/// (their closing reading).
pub fn reported(meter: &Meter, direction: Direction, day: Date) -> Vec<&'static Calendar> {
    let now = tariff(meter, direction, day);
    let mut calendars: Vec<&'static Calendar> = Vec::new();
    let mut add = |c: &'static Calendar| {
        if !calendars.iter().any(|known| known.id == c.id) {
            calendars.push(c);
        }
    };
    if let Ok(before) = day.yesterday()
        && before >= meter.activation
    {
        let then = tariff(meter, direction, before);
        if let Some(s) = then.supplier {
            add(s);
        }
        add(then.distributor);
    }
    if let Some(s) = now.supplier {
        add(s);
    }
    add(now.distributor);
    calendars.sort_by_key(|c| (c.id.starts_with('D'), c.id));
    calendars
}

fn off_peak(hours: OffPeak, hour: u8) -> bool {
    hours.iter().any(|&(from, to)| {
        if from <= to {
            (from..to).contains(&hour)
        } else {
            hour >= from || hour < to
        }
    })
}

fn high_season(day: Date) -> bool {
    !(4..=10).contains(&day.month())
}

/// A Tempo day's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Blue,
    White,
    Red,
}

const TAG_TEMPO: u64 = 11;

/// The colour of the Tempo day starting at 06:00 on `day`, drawn per day (the
/// same for every Tempo meter, as RTE's calendar is): red only on weekdays from
/// November to March (about one in six), white on about one day in six but never
/// on a Sunday, blue otherwise.
pub fn tempo_colour(day: Date) -> Colour {
    let draw = unit(
        0x7E3B0,
        TAG_TEMPO,
        i64::from(day.year()) * 1000 + i64::from(day.day_of_year()),
    );
    let weekday = day.weekday();
    let winter = high_season(day);
    if winter && !matches!(weekday, Weekday::Saturday | Weekday::Sunday) && draw < 0.17 {
        Colour::Red
    } else if weekday != Weekday::Sunday && (0.17..0.34).contains(&draw) {
        Colour::White
    } else {
        Colour::Blue
    }
}

/// The registers (distributor's, supplier's if any) counting the interval that
/// starts at UTC second `start`.
pub fn registers_of(
    meter: &Meter,
    direction: Direction,
    start: i64,
) -> Result<(usize, Option<usize>), TimeError> {
    let ts = Timestamp::from_second(start).map_err(|e| TimeError::OutOfRange(e.to_string()))?;
    let local = PARIS.to_datetime(ts);
    let day = local.date();
    let hour = u8::try_from(local.hour()).unwrap_or(0);
    let t = tariff(meter, direction, day);
    let pick = |calendar: &Calendar, id: &str| {
        calendar
            .classes
            .iter()
            .find(|c| c.id == id)
            .map_or(calendar.classes[0].register, |c| c.register)
    };
    let distributor = if t.distributor.classes.len() == 1 {
        t.distributor.classes[0].register
    } else {
        let id = match (high_season(day), off_peak(t.off_peak, hour)) {
            (true, false) => "HPH",
            (true, true) => "HCH",
            (false, false) => "HPB",
            (false, true) => "HCB",
        };
        pick(t.distributor, id)
    };
    let supplier = t.supplier.map(|calendar| {
        let id = match t.offer {
            Offer::Base => "BASE",
            Offer::PeakOffPeak(hours) => {
                if off_peak(hours, hour) {
                    "HC"
                } else {
                    "HP"
                }
            }
            Offer::Tempo => {
                // The Tempo day of an instant before 06:00 is the previous one.
                let tempo_day = if hour < 6 {
                    day.yesterday().unwrap_or(day)
                } else {
                    day
                };
                let night = off_peak(NIGHT, hour);
                match (tempo_colour(tempo_day), night) {
                    (Colour::Blue, true) => "BUHC",
                    (Colour::Blue, false) => "BUHP",
                    (Colour::White, true) => "BCHC",
                    (Colour::White, false) => "BCHP",
                    (Colour::Red, true) => "RHC",
                    (Colour::Red, false) => "RHP",
                }
            }
        };
        pick(calendar, id)
    });
    Ok((distributor, supplier))
}

/// Split `total` Wh among registers in proportion to `parts` (W·min), whole Wh
/// each, adding up to `total` exactly (largest remainder, ties to the lower
/// register).
pub fn apportion(parts: &[u64; REGISTERS], total: u64) -> [u64; REGISTERS] {
    let mut out = [0u64; REGISTERS];
    let sum: u64 = parts.iter().sum();
    if sum == 0 {
        return out;
    }
    let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(REGISTERS);
    let mut given = 0;
    for (i, part) in parts.iter().enumerate() {
        let exact = u128::from(*part) * u128::from(total);
        let share = (exact / u128::from(sum)) as u64;
        out[i] = share;
        given += share;
        if *part > 0 {
            remainders.push(((exact % u128::from(sum)) as u64, i));
        }
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take((total - given) as usize) {
        out[i] += 1;
    }
    out
}

/// A meter's counters at one instant: the totalisator and each register (D1–D4,
/// F1–F10), Wh since commissioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub total: u64,
    pub registers: [u64; REGISTERS],
}

impl Counters {
    /// Add a day's counters.
    pub fn add(&mut self, other: &Counters) {
        self.total += other.total;
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers) {
            *mine += theirs;
        }
    }
}

/// The energy of one Paris day, Wh, and how it splits among the registers: each
/// load-curve interval goes to its distributor's and its supplier's class
/// ([`registers_of`]); each calendar's share adds up to the day's energy
/// ([`synth::daily_energy`]) exactly.
pub fn day_counters(meter: &Meter, direction: Direction, day: Date) -> Result<Counters, TimeError> {
    let minutes = u64::from(meter.step_minutes);
    let mut distributor = [0u64; REGISTERS];
    let mut supplier = [0u64; REGISTERS];
    let mut sum = 0u64;
    for p in synth::day_curve(meter, direction, day)? {
        let energy = u64::from(p.value) * minutes;
        sum += energy;
        let (d, s) = registers_of(meter, direction, p.start)?;
        distributor[d] += energy;
        if let Some(s) = s {
            supplier[s] += energy;
        }
    }
    let total = (sum + 30) / 60;
    let mut registers = apportion(&distributor, total);
    for (r, share) in registers.iter_mut().zip(apportion(&supplier, total)) {
        *r += share;
    }
    Ok(Counters { total, registers })
}

/// Cumulative energy counters (index), memoised per month so an index far from the
/// commissioning date stays cheap.
#[derive(Debug, Default)]
pub struct IndexCache {
    /// (PRM, direction, first day of a month) -> counters from commissioning to
    /// that day's midnight.
    months: Mutex<HashMap<(Prm, Direction, Date), Counters>>,
}

impl IndexCache {
    /// The meter's index (totalisator) in Wh at the Paris midnight starting `day`.
    pub fn index_at(
        &self,
        meter: &Meter,
        direction: Direction,
        day: Date,
    ) -> Result<u64, TimeError> {
        Ok(self.counters_at(meter, direction, day)?.total)
    }

    /// Every counter of the meter at the Paris midnight starting `day`.
    pub fn counters_at(
        &self,
        meter: &Meter,
        direction: Direction,
        day: Date,
    ) -> Result<Counters, TimeError> {
        if day <= meter.activation {
            return Ok(Counters::default());
        }
        let month = day.first_of_month();
        let mut counters = self.month_start(meter, direction, month)?;
        let mut d = month.max(meter.activation);
        while d < day {
            counters.add(&day_counters(meter, direction, d)?);
            d = next_day(d)?;
        }
        Ok(counters)
    }

    fn month_start(
        &self,
        meter: &Meter,
        direction: Direction,
        month: Date,
    ) -> Result<Counters, TimeError> {
        let first = meter.activation.first_of_month();
        if month <= first {
            return Ok(Counters::default());
        }
        let key = |m: Date| (meter.prm, direction, m);
        // Walk back to the latest memoised month, then forward, memoising.
        let (mut at, mut counters) = {
            let months = self.months.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = months.get(&key(month)) {
                return Ok(*v);
            }
            let mut m = month;
            loop {
                let prev = m
                    .checked_sub(jiff::Span::new().months(1))
                    .map_err(|e| TimeError::OutOfRange(e.to_string()))?;
                if prev < first {
                    break (first, Counters::default());
                }
                if let Some(v) = months.get(&key(prev)) {
                    break (prev, *v);
                }
                m = prev;
            }
        };
        while at < month {
            let next = at
                .checked_add(jiff::Span::new().months(1))
                .map_err(|e| TimeError::OutOfRange(e.to_string()))?;
            let mut d = at.max(meter.activation);
            while d < next {
                counters.add(&day_counters(meter, direction, d)?);
                d = next_day(d)?;
            }
            at = next;
            self.months
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key(at), counters);
        }
        Ok(counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::meter;

    fn m(s: &str) -> Meter {
        meter(s.parse().unwrap())
    }

    #[test]
    fn apportion_adds_up_exactly() {
        let mut parts = [0u64; REGISTERS];
        parts[0] = 100;
        parts[1] = 100;
        parts[2] = 100;
        let out = apportion(&parts, 10);
        assert_eq!(out.iter().sum::<u64>(), 10);
        assert_eq!(&out[..3], &[4, 3, 3]);
        assert_eq!(apportion(&[0; REGISTERS], 0), [0; REGISTERS]);
    }

    #[test]
    fn off_peak_hours_wrap_past_midnight() {
        assert!(off_peak(NIGHT, 22) && off_peak(NIGHT, 0) && off_peak(NIGHT, 5));
        assert!(!off_peak(NIGHT, 6) && !off_peak(NIGHT, 21));
        assert!(off_peak(NIGHT_AND_AFTERNOON, 13) && !off_peak(NIGHT_AND_AFTERNOON, 22));
    }

    #[test]
    fn tempo_reds_only_on_winter_weekdays_and_some_of_each_colour() {
        let mut counts = [0; 3];
        let mut day = date(2025, 9, 1);
        while day < date(2026, 9, 1) {
            let colour = tempo_colour(day);
            counts[colour as usize] += 1;
            if colour == Colour::Red {
                assert!(high_season(day), "{day}");
                assert!(!matches!(
                    day.weekday(),
                    Weekday::Saturday | Weekday::Sunday
                ));
            }
            if colour == Colour::White {
                assert_ne!(day.weekday(), Weekday::Sunday);
            }
            day = day.tomorrow().unwrap();
        }
        assert!(counts.iter().all(|c| *c > 10), "{counts:?}");
    }

    #[test]
    fn calendars_change_on_their_day_and_report_their_closing() {
        let meter = m(CALENDAR_CHANGE_PRM);
        let before = CALENDAR_CHANGE.yesterday().unwrap();
        assert_eq!(tariff(&meter, Direction::Consumption, before), BASE);
        assert_eq!(
            tariff(&meter, Direction::Consumption, CALENDAR_CHANGE)
                .distributor
                .id,
            "DI000003"
        );
        let ids = |day| -> Vec<&str> {
            reported(&meter, Direction::Consumption, day)
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(before), ["FC000165", "DI000001"]);
        assert_eq!(
            ids(CALENDAR_CHANGE),
            ["FC000165", "FC020831", "DI000001", "DI000003"]
        );
        assert_eq!(
            ids(CALENDAR_CHANGE.tomorrow().unwrap()),
            ["FC020831", "DI000003"]
        );
    }
    #[test]
    fn index_is_cumulative() {
        let cache = IndexCache::default();
        let house = m("11453290002823");
        let d = date(2021, 3, 10);
        let i0 = cache.index_at(&house, Direction::Consumption, d).unwrap();
        let i1 = cache
            .index_at(&house, Direction::Consumption, next_day(d).unwrap())
            .unwrap();
        assert_eq!(
            i1 - i0,
            synth::daily_energy(&house, Direction::Consumption, d).unwrap()
        );
        let fresh = IndexCache::default();
        assert_eq!(
            fresh.index_at(&house, Direction::Consumption, d).unwrap(),
            i0
        );
    }

    /// Registers D1–D4 (distributor) and F1–F10 (supplier) of a day.
    fn shares(c: &Counters) -> (u64, u64) {
        (c.registers[..4].iter().sum(), c.registers[4..].iter().sum())
    }

    #[test]
    fn each_calendar_splits_the_whole_day_exactly() {
        let days = [
            date(2026, 3, 29),
            date(2026, 7, 14),
            date(2026, 10, 25),
            date(2026, 11, 8),
            date(2026, 11, 9),
            date(2026, 11, 20),
        ];
        for prm in [
            "22516914714270",
            TEMPO_PRM,
            OFF_PEAK_CHANGE_PRM,
            CALENDAR_CHANGE_PRM,
        ] {
            for day in days {
                let c = day_counters(&m(prm), Direction::Consumption, day).unwrap();
                assert_eq!(
                    c.total,
                    synth::daily_energy(&m(prm), Direction::Consumption, day).unwrap()
                );
                assert_eq!(shares(&c), (c.total, c.total), "{prm} {day}");
            }
        }
        // Production: the distributor's base calendar only.
        let plant = m("24880057139941");
        let c = day_counters(&plant, Direction::Production, date(2026, 6, 21)).unwrap();
        assert!(c.total > 0);
        assert_eq!(c.registers[0], c.total);
        assert_eq!(shares(&c), (c.total, 0));
    }

    /// Wh of `meter`'s curve on `day` in the local hours for which `off_peak` holds.
    fn curve_energy(meter: &Meter, day: Date, off_peak: impl Fn(i8) -> bool) -> f64 {
        synth::day_curve(meter, Direction::Consumption, day)
            .unwrap()
            .iter()
            .filter(|p| {
                let local = PARIS.to_datetime(Timestamp::from_second(p.start).unwrap());
                off_peak(local.hour())
            })
            .map(|p| f64::from(p.value) * f64::from(meter.step_minutes) / 60.0)
            .sum()
    }

    #[test]
    fn off_peak_classes_follow_the_meters_hours_and_their_change() {
        let meter = m(OFF_PEAK_CHANGE_PRM);
        let before = OFF_PEAK_CHANGE.yesterday().unwrap();
        let night = |h: i8| !(6..22).contains(&h);
        let afternoon = |h: i8| (2..7).contains(&h) || (13..16).contains(&h);
        for (day, hours) in [
            (before, &night as &dyn Fn(i8) -> bool),
            (OFF_PEAK_CHANGE, &afternoon),
        ] {
            let c = day_counters(&meter, Direction::Consumption, day).unwrap();
            // November: high season, HCH (D2) and HC (F1).
            let expected = curve_energy(&meter, day, hours);
            for register in [1, 4] {
                let got = c.registers[register] as f64;
                assert!(
                    (got - expected).abs() <= 1.0,
                    "{day} register {register}: {got} vs {expected}"
                );
            }
            assert_eq!(
                c.registers[2] + c.registers[3],
                0,
                "no low season in November"
            );
        }
        // The hours really differ: 22:00-02:00 off-peak before, peak after.
        let late = |h: i8| !(2..22).contains(&h);
        assert!(curve_energy(&meter, before, late) > 100.0);
    }

    #[test]
    fn tempo_counts_each_tempo_day_in_its_colour() {
        let meter = m(TEMPO_PRM);
        // Registers F1..F6: BUHC, BUHP, BCHC, BCHP, RHC, RHP.
        let mut seen = [false; 3];
        let mut day = date(2025, 11, 3);
        while day < date(2026, 1, 31) {
            let c = day_counters(&meter, Direction::Consumption, day).unwrap();
            let colour = tempo_colour(day) as usize;
            let yesterday = tempo_colour(day.yesterday().unwrap()) as usize;
            seen[colour] = true;
            // Peak hours (06:00-22:00) go to the day's colour only.
            for (i, peak) in [5usize, 7, 9].into_iter().enumerate() {
                assert_eq!(
                    c.registers[peak] > 0,
                    i == colour,
                    "{day} peak of colour {i}"
                );
            }
            // Off-peak hours: before 06:00 yesterday's colour, after 22:00 today's.
            for (i, off) in [4usize, 6, 8].into_iter().enumerate() {
                assert_eq!(
                    c.registers[off] > 0,
                    i == colour || i == yesterday,
                    "{day} off-peak of colour {i}"
                );
            }
            assert_eq!(c.registers[0], c.total, "distributor: base");
            day = day.tomorrow().unwrap();
        }
        assert_eq!(seen, [true; 3], "blue, white and red days in winter");
    }
}

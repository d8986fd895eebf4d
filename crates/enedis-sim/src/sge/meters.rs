//! The SGE meters: one delivery point per segment, the two PRMs of the
//! consometers examples among them. Values come from [`crate::synth`] (a household
//! load, a solar plant), scaled by segment, so they are deterministic and the
//! energies, indexes and curves of one point agree.
//!
//! | PRM | segment | curve | unit, `n` | stamped at | sens | commissioned |
//! |---|---|---|---|---|---|---|
//! | [`C1_PRM`] | C1 (HTA, ~2500 households) | PT10M | whole kW, R | start | SOUTIRAGE | 2020-01-01 |
//! | [`C2_PRM`] | C2 (HTA, ~1000 households) | PT10M | whole kW, R | start | SOUTIRAGE | 2020-01-01 |
//! | [`C3_PRM`] | C3 (HTA, ~250 households) | PT10M | whole kW, R | start | SOUTIRAGE | 2020-01-01 |
//! | [`C4_PRM`] | C4 (BT > 36 kVA, ~40 households; example PRM) | PT5M | whole kW, R | start | SOUTIRAGE | 2015-01-01 |
//! | [`C5_PRM`] | C5 (Linky; example PRM) | PT30M | W, B (+`iv`, `ec`) | end | SOUTIRAGE | 2015-01-01 |
//! | [`P1_PRM`] | P1 (HTA solar plant, ~400 roofs) | PT10M | whole kW, R | start | INJECTION | 2020-01-01 |
//! | [`P4_PRM`] | P4 (Linky, one roof) | PT30M | W, B (+`iv`, `ec`) | end | INJECTION | 2020-01-01 |

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use jiff::Timestamp;
use jiff::civil::{Date, date};

use crate::catalogue::{Kind, Meter};
use crate::model::{Direction, Prm};
use crate::paris::{PARIS, TimeError, next_day};
use crate::synth;

/// C5 (Linky), the consometers example PRM.
pub const C5_PRM: &str = crate::tariff::SGE_C5_PRM;
/// C4 (BT over 36 kVA), the consometers example PRM.
pub const C4_PRM: &str = "30001642617347";
/// C1 (HTA, contract CARD).
pub const C1_PRM: &str = "30001642610001";
/// C2 (HTA).
pub const C2_PRM: &str = "30001642610002";
/// C3 (HTA).
pub const C3_PRM: &str = "30001642610003";
/// P1 (HTA producer, injection only).
pub const P1_PRM: &str = "30001642610011";
/// P4 (Linky producer, injection only).
pub const P4_PRM: &str = "25001642610014";
/// Every SGE point, consumers first.
pub const ALL_PRMS: [&str; 7] = [C1_PRM, C2_PRM, C3_PRM, C4_PRM, C5_PRM, P1_PRM, P4_PRM];

/// Customer segments: C1–C4 consumers over 36 kVA (C1–C3 on HTA), C5 Linky up
/// to 36 kVA; P1–P3 producers over 36 kVA, P4 Linky producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    C1,
    C2,
    C3,
    C4,
    C5,
    P1,
    P2,
    P3,
    P4,
}

impl Segment {
    pub fn name(self) -> &'static str {
        match self {
            Segment::C1 => "C1",
            Segment::C2 => "C2",
            Segment::C3 => "C3",
            Segment::C4 => "C4",
            Segment::C5 => "C5",
            Segment::P1 => "P1",
            Segment::P2 => "P2",
            Segment::P3 => "P3",
            Segment::P4 => "P4",
        }
    }

    /// A Linky point (C5, P4): PT30M stamped at the interval end, no corrected
    /// data, only the active power curve.
    pub fn linky(self) -> bool {
        matches!(self, Segment::C5 | Segment::P4)
    }

    pub fn producer(self) -> bool {
        matches!(self, Segment::P1 | Segment::P2 | Segment::P3 | Segment::P4)
    }

    /// On the HTA network (20 kV).
    pub fn hta(self) -> bool {
        matches!(
            self,
            Segment::C1 | Segment::C2 | Segment::C3 | Segment::P1 | Segment::P2 | Segment::P3
        )
    }
}

/// One SGE meter.
#[derive(Debug, Clone)]
pub struct SgeMeter {
    pub segment: Segment,
    /// The synthetic meter whose curve is served (step, kind, commissioning).
    pub meter: Meter,
    /// How many households (roofs for a producer) the point stands for.
    pub factor: u64,
    /// Subscribed (consumers) or connection (producers) power, kVA.
    pub power_kva: u32,
}

/// The meter of that PRM, if SGE knows it (others: SGT401).
pub fn lookup(prm: Prm) -> Option<SgeMeter> {
    let (segment, step_minutes, factor, power_kva, activation) = match prm.as_str() {
        C1_PRM => (Segment::C1, 10, 2500, 6000, date(2020, 1, 1)),
        C2_PRM => (Segment::C2, 10, 1000, 2500, date(2020, 1, 1)),
        C3_PRM => (Segment::C3, 10, 250, 600, date(2020, 1, 1)),
        C4_PRM => (Segment::C4, 5, 40, 120, date(2015, 1, 1)),
        C5_PRM => (Segment::C5, 30, 1, 9, date(2015, 1, 1)),
        P1_PRM => (Segment::P1, 10, 400, 2000, date(2020, 1, 1)),
        P4_PRM => (Segment::P4, 30, 1, 6, date(2020, 1, 1)),
        _ => return None,
    };
    let kind = if segment.producer() {
        Kind::Production
    } else {
        Kind::Consumption
    };
    Some(SgeMeter {
        segment,
        factor,
        power_kva,
        meter: Meter {
            prm,
            kind,
            step_minutes,
            activation,
            load_curve: true,
            gaps: false,
            profile: None,
            standing_consent: false,
        },
    })
}

/// One curve interval as SGE writes it.
pub struct Interval {
    /// Paris local stamp, `YYYY-MM-DD hh:mm:ss`, without offset (so the
    /// repeated hour of the last Sunday of October appears twice, in order).
    pub stamp: String,
    /// UTC second the interval starts.
    pub start: i64,
    /// W, VAr or V.
    pub value: u64,
}

const TAG_REACTIVE: u64 = 21;
const TAG_CAPACITIVE: u64 = 22;
const TAG_VOLTAGE: u64 = 23;

/// The distributor's classes of a C1–C4/P1–P3 index (`idCalendrier` `D`), in the
/// order and with the labels of the `C4-INDEX` example answer.
pub const CLASSES_D: [(&str, &str); 4] = [
    ("HPH", "Heures Pleines Hiver / Saison Haute"),
    ("HCH", "Heures Creuses Hiver / Saison Haute"),
    ("HPE", "Heures Pleines Eté"),
    ("HCE", "Heures Creuses Eté"),
];

impl SgeMeter {
    /// Consumers are read in SOUTIRAGE, producers in INJECTION.
    pub fn direction(&self) -> Direction {
        if self.segment.producer() {
            Direction::Production
        } else {
            Direction::Consumption
        }
    }

    /// `grandeurMetier`: `CONS` or `PROD`.
    pub fn grandeur_metier(&self) -> &'static str {
        if self.segment.producer() {
            "PROD"
        } else {
            "CONS"
        }
    }

    /// `p` of curve points.
    pub fn step_name(&self) -> &'static str {
        match self.meter.step_minutes {
            5 => "PT5M",
            10 => "PT10M",
            _ => "PT30M",
        }
    }

    /// Linky stamps at the interval end, the others at its start (NOTES "Curve
    /// stamping").
    fn stamps_end(&self) -> bool {
        self.segment.linky()
    }

    fn intervals(
        &self,
        day: Date,
        value: impl Fn(i64, u64) -> u64,
    ) -> Result<Vec<Interval>, TimeError> {
        synth::day_curve(&self.meter, self.direction(), day)?
            .into_iter()
            .map(|p| {
                let at = if self.stamps_end() { p.end } else { p.start };
                Ok(Interval {
                    stamp: synth::local_string(at)?,
                    start: p.start,
                    value: value(p.start, self.scale(p.value)),
                })
            })
            .collect()
    }

    /// The raw active-power curve of one Paris day (46 or 50 intervals of 30
    /// minutes on DST days).
    pub fn day_curve(&self, day: Date) -> Result<Vec<Interval>, TimeError> {
        self.intervals(day, |_, watts| watts)
    }

    /// The reactive-power curve (VAr, whole kVAr): inductive (PRI) is the
    /// active power times a tan φ between 0.15 and 0.40; capacitive (PRC) a
    /// small fraction of it, mostly 0.
    pub fn reactive_curve(&self, day: Date, capacitive: bool) -> Result<Vec<Interval>, TimeError> {
        let seed = synth::seed(self.meter.prm);
        self.intervals(day, |start, watts| {
            let ratio = if capacitive {
                0.03 * synth::unit(seed, TAG_CAPACITIVE, start)
            } else {
                0.15 + 0.25 * synth::unit(seed, TAG_REACTIVE, start)
            };
            ((watts as f64 * ratio / 1000.0).round() as u64) * 1000
        })
    }

    /// The voltage curve (V): 20 kV ± 2 % on HTA, 230 V ± 3 % on BT.
    pub fn voltage_curve(&self, day: Date) -> Result<Vec<Interval>, TimeError> {
        let seed = synth::seed(self.meter.prm);
        let (nominal, spread) = if self.segment.hta() {
            (20_000.0, 0.02)
        } else {
            (230.0, 0.03)
        };
        self.intervals(day, |start, _| {
            let u = synth::unit(seed, TAG_VOLTAGE, start);
            (nominal * (1.0 - spread + 2.0 * spread * u)).round() as u64
        })
    }

    /// Linky curves are the household's own, in W; the others stand for
    /// `factor` households (roofs), in whole kW as the example answers.
    fn scale(&self, watts: u32) -> u64 {
        if self.segment.linky() {
            u64::from(watts)
        } else {
            (u64::from(watts) * self.factor).div_ceil(1000) * 1000
        }
    }

    /// Daily active energy, Wh: the integral of the day's curve (C1–C4:
    /// `INTEG.COURBE`; Linky answers `DIFF.INDEX`, equal here).
    pub fn day_energy(&self, day: Date) -> Result<u64, TimeError> {
        let minutes = u64::from(self.meter.step_minutes);
        let sum: u64 = self.day_curve(day)?.iter().map(|i| i.value * minutes).sum();
        Ok((sum + 30) / 60)
    }

    /// The day's energy split among [`CLASSES_D`] (off-peak 22:00–06:00 local,
    /// high season November–March), adding up to [`Self::day_energy`] exactly.
    pub fn day_classes(&self, day: Date) -> Result<[u64; 4], TimeError> {
        let minutes = u64::from(self.meter.step_minutes);
        let high = !(4..=10).contains(&day.month());
        let mut parts = [0u64; crate::tariff::REGISTERS];
        let mut sum = 0;
        for i in self.day_curve(day)? {
            let ts = Timestamp::from_second(i.start)
                .map_err(|e| TimeError::OutOfRange(e.to_string()))?;
            let hour = PARIS.to_datetime(ts).hour();
            let off_peak = !(6..22).contains(&hour);
            let class = match (high, off_peak) {
                (true, false) => 0,
                (true, true) => 1,
                (false, false) => 2,
                (false, true) => 3,
            };
            parts[class] += i.value * minutes;
            sum += i.value * minutes;
        }
        let split = crate::tariff::apportion(&parts, (sum + 30) / 60);
        Ok([split[0], split[1], split[2], split[3]])
    }

    /// The class indexes (Wh since commissioning) at the Paris midnight
    /// starting `day`, memoised per month.
    pub fn index_classes(&self, day: Date) -> Result<[u64; 4], TimeError> {
        if day <= self.meter.activation {
            return Ok([0; 4]);
        }
        let month = day.first_of_month();
        let mut counters = self.month_start(month)?;
        let mut d = month.max(self.meter.activation);
        while d < day {
            add(&mut counters, self.day_classes(d)?);
            d = next_day(d)?;
        }
        Ok(counters)
    }

    fn month_start(&self, month: Date) -> Result<[u64; 4], TimeError> {
        static MONTHS: OnceLock<MonthMemo> = OnceLock::new();
        let memo = MONTHS.get_or_init(Default::default);
        let first = self.meter.activation.first_of_month();
        if month <= first {
            return Ok([0; 4]);
        }
        let known = |m: Date| {
            memo.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(self.meter.prm, m))
                .copied()
        };
        if let Some(c) = known(month) {
            return Ok(c);
        }
        // Walk forward from the latest memoised month before this one.
        let mut m = first;
        let mut counters = [0u64; 4];
        let mut probe = month;
        while probe > first {
            probe = probe
                .checked_sub(jiff::Span::new().months(1))
                .map_err(|e| TimeError::OutOfRange(e.to_string()))?;
            if let Some(c) = known(probe) {
                m = probe;
                counters = c;
                break;
            }
        }
        while m < month {
            let next = m
                .checked_add(jiff::Span::new().months(1))
                .map_err(|e| TimeError::OutOfRange(e.to_string()))?;
            let mut d = m.max(self.meter.activation);
            while d < next {
                add(&mut counters, self.day_classes(d)?);
                d = next_day(d)?;
            }
            m = next;
            memo.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((self.meter.prm, m), counters);
        }
        Ok(counters)
    }
}

/// Class indexes at the first day of a month, per point.
type MonthMemo = Mutex<HashMap<(Prm, Date), [u64; 4]>>;

fn add(counters: &mut [u64; 4], day: [u64; 4]) {
    for (c, d) in counters.iter_mut().zip(day) {
        *c += d;
    }
}

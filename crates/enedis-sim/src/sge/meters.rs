//! The SGE meters: the two PRMs of the consometers examples (one C5 Linky, one C4
//! meter), each with its segment, curve step and curve stamping. Values come from
//! [`crate::synth`], scaled for C4, so they are deterministic.

use jiff::civil::{Date, date};

use crate::catalogue::{Kind, Meter};
use crate::model::{Direction, Prm};
use crate::synth;

/// Customer segments (C1-C4: over 36 kVA, C5: Linky up to 36 kVA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    C4,
    C5,
}

/// One SGE meter.
#[derive(Debug, Clone)]
pub struct SgeMeter {
    pub segment: Segment,
    /// The synthetic meter whose curve is served (step and kind).
    pub meter: Meter,
}

/// The example PRMs of `consometers-sge-tiers` (`prms.md`).
pub const C5_PRM: &str = "09111642617347";
pub const C4_PRM: &str = "30001642617347";

/// The meter of that PRM, if SGE knows it (others: SGT401).
pub fn lookup(prm: Prm) -> Option<SgeMeter> {
    let (segment, step_minutes) = match prm.as_str() {
        C5_PRM => (Segment::C5, 30),
        C4_PRM => (Segment::C4, 5),
        _ => return None,
    };
    Some(SgeMeter {
        segment,
        meter: Meter {
            prm,
            kind: Kind::Consumption,
            step_minutes,
            activation: date(2015, 1, 1),
            load_curve: true,
            gaps: false,
            profile: None,
            standing_consent: false,
        },
    })
}

/// One curve interval as SGE writes it.
pub struct Interval {
    /// Paris local stamp, `YYYY-MM-DD hh:mm:ss`.
    pub stamp: String,
    /// Mean active power, W.
    pub watts: u64,
}

impl SgeMeter {
    /// C5 stamps at the interval end, C4 at its start (NOTES "Curve stamping").
    fn stamps_end(&self) -> bool {
        self.segment == Segment::C5
    }

    /// The raw active-power curve of one Paris day.
    pub fn day_curve(&self, day: Date) -> Result<Vec<Interval>, crate::paris::TimeError> {
        synth::day_curve(&self.meter, Direction::Consumption, day)?
            .into_iter()
            .map(|p| {
                let at = if self.stamps_end() { p.end } else { p.start };
                Ok(Interval {
                    stamp: synth::local_string(at)?,
                    watts: self.scale(p.value),
                })
            })
            .collect()
    }

    /// C4 curves are a building's (about 40 households), in whole kW as the
    /// example answer; C5 curves are the household's own, in W.
    fn scale(&self, watts: u32) -> u64 {
        match self.segment {
            Segment::C5 => u64::from(watts),
            Segment::C4 => (u64::from(watts) * 40).div_ceil(1000) * 1000,
        }
    }

    /// Daily active energy, Wh: the integral of the day's curve (C4:
    /// `INTEG.COURBE`; C5 answers `DIFF.INDEX`, equal here).
    pub fn day_energy(&self, day: Date) -> Result<u64, crate::paris::TimeError> {
        let minutes = u64::from(self.meter.step_minutes);
        let sum: u64 = self.day_curve(day)?.iter().map(|i| i.watts * minutes).sum();
        Ok((sum + 30) / 60)
    }
}

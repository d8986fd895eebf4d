//! The simulator's meters: the ten sandbox test clients of Enedis (chosen by the last
//! digit of `state`), two meters with uncommon steps, three with special calendars
//! ([`crate::tariff`]: Tempo, changing off-peak hours, changing calendars), and the
//! default meter every other PRM gets.
//!
//! A meter is fully described by its PRM: the same PRM always has the same kind,
//! step, activation date and quirks, so the values computed from it never change.

use jiff::civil::{Date, date};
use serde::Serialize;

use crate::model::{Direction, Prm};

/// Which way energy flows at a delivery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Draws from the grid only.
    Consumption,
    /// Injects into the grid only (a producer without consumption contract).
    Production,
    /// Self-consumption: draws the net deficit, injects the net surplus.
    SelfConsumption,
}

impl Kind {
    /// Whether data of that direction exist for this kind of point.
    pub fn has(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Kind::SelfConsumption, _)
                | (Kind::Consumption, Direction::Consumption)
                | (Kind::Production, Direction::Production)
        )
    }
}

/// One simulated meter.
#[derive(Debug, Clone, Serialize)]
pub struct Meter {
    pub prm: Prm,
    pub kind: Kind,
    /// Load-curve step in minutes (10, 30 or 60 here).
    pub step_minutes: u16,
    /// Last commissioning date: earlier periods get `ADAM-ERR0123`.
    pub activation: Date,
    /// Whether load-curve recording is on (off: `no_data_found` on load curves).
    pub load_curve: bool,
    /// Sandbox profile 4: no data on Tuesdays, load-curve holes on Wednesdays.
    pub gaps: bool,
    /// The sandbox profile this PRM belongs to, if any.
    pub profile: Option<u8>,
    /// Whether the application holds a consent for it from the start.
    pub standing_consent: bool,
}

/// One sandbox test client.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Profile {
    pub digit: u8,
    pub summary: &'static str,
    pub prms: &'static [&'static str],
}

/// The ten sandbox profiles, indexed by digit (`enedis-api.md`).
pub const PROFILES: [Profile; 10] = [
    Profile {
        digit: 0,
        summary: "one consumption PRM, load curve on, no gaps",
        prms: &["22516914714270"],
    },
    Profile {
        digit: 1,
        summary: "one consumption PRM commissioned 2019-08-27 (earlier periods: ADAM-ERR0123)",
        prms: &["11453290002823"],
    },
    Profile {
        digit: 2,
        summary: "load curve not activated (no_data_found on load curves)",
        prms: &["32320647321714"],
    },
    Profile {
        digit: 3,
        summary: "one consumption PRM and one production PRM",
        prms: &["12345678901234", "10284856584123"],
    },
    Profile {
        digit: 4,
        summary: "gaps: no data on Tuesdays, load curve missing 12:00-18:00 on Wednesdays",
        prms: &["42900589957123"],
    },
    Profile {
        digit: 5,
        summary: "production only (consumption asked: ADAM-ERR0069)",
        prms: &["24880057139941"],
    },
    Profile {
        digit: 6,
        summary: "self-consumption: net consumption and production",
        prms: &["12655648759651"],
    },
    Profile {
        digit: 7,
        summary: "three consumption PRMs",
        prms: &["64975835695673", "63695879465986", "22315546958763"],
    },
    Profile {
        digit: 8,
        summary: "consents, then revokes at once (ADAM-DC-0008 afterwards)",
        prms: &["26584978546985"],
    },
    Profile {
        digit: 9,
        summary: "always refuses consent",
        prms: &[],
    },
];

/// A consumption meter with a 10-minute load curve (144 readings a day).
pub const PT10M_PRM: &str = "30000000000010";
/// A consumption meter with a 60-minute load curve (24 readings a day).
pub const PT60M_PRM: &str = "30000000000060";

/// A meter with Tempo (supplier calendar `FC000050`) and the distributor's base
/// calendar, as in the SGE capture ([`crate::tariff`]).
pub const TEMPO_PRM: &str = "30000000000050";
/// A peak / off-peak meter whose off-peak hours change on
/// [`crate::tariff::OFF_PEAK_CHANGE`].
pub const OFF_PEAK_CHANGE_PRM: &str = "30000000000022";
/// A meter on a base offer until [`crate::tariff::CALENDAR_CHANGE`], then on
/// peak / off-peak: both its calendars change.
pub const CALENDAR_CHANGE_PRM: &str = "30000000000033";

/// Meters with special calendars: Tempo, off-peak hours that change, both
/// calendars that change.
pub const CALENDAR_PRMS: [&str; 3] = [TEMPO_PRM, OFF_PEAK_CHANGE_PRM, CALENDAR_CHANGE_PRM];

/// Commissioning date of every meter except profile 1's.
pub const DEFAULT_ACTIVATION: Date = date(2014, 1, 1);
/// Profile 1's commissioning date.
pub const PROFILE1_ACTIVATION: Date = date(2019, 8, 27);

/// The profile chosen by the last character of `state`, when it is a digit.
pub fn profile_of_state(state: &str) -> Option<u8> {
    let last = state.chars().last()?;
    last.to_digit(10).map(|d| d as u8)
}

fn profile_of_prm(prm: &str) -> Option<u8> {
    PROFILES
        .iter()
        .find(|p| p.prms.contains(&prm))
        .map(|p| p.digit)
}

/// The meter behind any PRM.
pub fn meter(prm: Prm) -> Meter {
    let s = prm.as_str();
    let profile = profile_of_prm(s);
    let mut meter = Meter {
        prm,
        kind: Kind::Consumption,
        step_minutes: 30,
        activation: DEFAULT_ACTIVATION,
        load_curve: true,
        gaps: false,
        profile,
        standing_consent: matches!(profile, Some(0..=7)),
    };
    match (profile, s) {
        (Some(1), _) => meter.activation = PROFILE1_ACTIVATION,
        (Some(2), _) => meter.load_curve = false,
        (Some(3), "10284856584123") | (Some(5), _) => meter.kind = Kind::Production,
        (Some(4), _) => meter.gaps = true,
        (Some(6), _) => meter.kind = Kind::SelfConsumption,
        (None, PT10M_PRM) => {
            meter.step_minutes = 10;
            meter.standing_consent = true;
        }
        (None, PT60M_PRM) => {
            meter.step_minutes = 60;
            meter.standing_consent = true;
        }
        (None, s) if CALENDAR_PRMS.contains(&s) => meter.standing_consent = true,
        _ => {}
    }
    meter
}

/// Every meter the simulator knows by name (for the admin listing).
pub fn known_meters() -> Vec<Meter> {
    PROFILES
        .iter()
        .flat_map(|p| p.prms.iter())
        .chain([PT10M_PRM, PT60M_PRM].iter())
        .chain(CALENDAR_PRMS.iter())
        .filter_map(|s| s.parse().ok())
        .map(meter)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prm(s: &str) -> Prm {
        s.parse().unwrap()
    }

    #[test]
    fn profiles_and_special_meters() {
        assert_eq!(profile_of_state("abc3"), Some(3));
        assert_eq!(profile_of_state("abc"), None);
        assert_eq!(profile_of_state(""), None);
        assert_eq!(meter(prm("11453290002823")).activation, PROFILE1_ACTIVATION);
        assert!(!meter(prm("32320647321714")).load_curve);
        assert_eq!(meter(prm("10284856584123")).kind, Kind::Production);
        assert_eq!(meter(prm("12345678901234")).kind, Kind::Consumption);
        assert_eq!(meter(prm(PT10M_PRM)).step_minutes, 10);
        assert_eq!(meter(prm(PT60M_PRM)).step_minutes, 60);
        assert!(!meter(prm("26584978546985")).standing_consent);
        assert!(!meter(prm("99999999999999")).standing_consent);
        assert_eq!(
            known_meters().iter().filter(|m| m.standing_consent).count(),
            16
        );
    }
}
